#pragma once
// JSON <-> FlatBuffers for the message types of one plugin schema, so that
// the admin API can take and give JSON. Built from the schema the plugin
// registered (reflection), guarded by a lock: not a hot path.
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace reflection {
struct Schema;
struct Object;
}  // namespace reflection

namespace flatbuffers {
class Parser;
}

namespace troupe::plugin {

class json_codec {
 public:
  explicit json_codec(const reflection::Schema& schema);
  ~json_codec();
  json_codec(const json_codec&) = delete;
  json_codec& operator=(const json_codec&) = delete;

  // Encodes `json` as a `type` (fully qualified table name). False with a
  // reason naming the field or the position on a mismatch.
  bool encode(const reflection::Object& type, std::string_view json, std::vector<std::uint8_t>& out,
              std::string& error);
  // Renders verified bytes of `type` as one line of JSON.
  bool decode(const reflection::Object& type, const std::uint8_t* data, std::string& out,
              std::string& error);

 private:
  bool reset(std::string& error);

  const reflection::Schema& schema_;
  std::mutex mu_;
  std::unique_ptr<flatbuffers::Parser> parser_;
};

}  // namespace troupe::plugin
