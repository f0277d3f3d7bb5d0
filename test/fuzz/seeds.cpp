// Writes a starting corpus for frame_fuzz: well-formed frames of each kind,
// each behind the mode byte and the split byte the target reads first.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "remote/session.hpp"

using namespace troupe::remote;
namespace wire = troupe::wire;

namespace {

void write(const std::string& dir, const std::string& name, std::uint8_t mode,
           std::span<const std::uint8_t> frame) {
  std::ofstream out(dir + "/" + name, std::ios::binary);
  const char head[2] = {static_cast<char>(mode), static_cast<char>(frame.size() / 2)};
  out.write(head, 2);
  out.write(reinterpret_cast<const char*>(frame.data()), static_cast<std::streamsize>(frame.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  write(dir, "hello", 0, encode_frame([&](flatbuffers::FlatBufferBuilder& b) {
          auto h = wire::CreateHello(b, protocol_version, b.CreateString("fuzz"), b.CreateString("peer"),
                                     b.CreateString("127.0.0.1:7701"), 2, oldest_protocol_version);
          return std::pair(wire::Body::Hello, h.Union());
        }));
  write(dir, "welcome", 0, encode_frame([&](flatbuffers::FlatBufferBuilder& b) {
          return std::pair(wire::Body::Welcome, wire::CreateWelcome(b, protocol_version).Union());
        }));
  write(dir, "ack", 1, encode_frame(0, 17, [](flatbuffers::FlatBufferBuilder& b) {
          return std::pair(wire::Body::Ack, wire::CreateAck(b).Union());
        }));
  write(dir, "watch", 1, encode_frame(3, 1, [](flatbuffers::FlatBufferBuilder& b) {
          auto w = wire::CreateWatch(b, b.CreateString("127.0.0.1:7701/$3"), b.CreateString("counter"));
          return std::pair(wire::Body::Watch, w.Union());
        }));
  write(dir, "spawn", 1, encode_frame([](flatbuffers::FlatBufferBuilder& b) {
          auto r = wire::CreateSpawnRequest(b, 7, b.CreateString("counter"), b.CreateString("c1"));
          return std::pair(wire::Body::SpawnRequest, r.Union());
        }));
  write(dir, "batch", 1, encode_frame(1, 2, [](flatbuffers::FlatBufferBuilder& b) {
          std::vector<std::uint8_t> payload(24, 5);
          auto hs = b.CreateVector(std::vector{wire::CreateHeader(b, b.CreateString("trace"), b.CreateString("x"))});
          auto e = wire::CreateEnvelope(b, 0, 1, 0, hs, b.CreateVector(payload));
          auto batch = wire::CreateBatch(b, b.CreateVectorOfStrings(std::vector<std::string>{"counter"}),
                                         b.CreateVectorOfStrings(std::vector<std::string>{"127.0.0.1:7701/$3"}),
                                         b.CreateVector(std::vector<std::uint64_t>{42}),
                                         b.CreateVector(std::vector{e}));
          return std::pair(wire::Body::Batch, batch.Union());
        }));
  return 0;
}
