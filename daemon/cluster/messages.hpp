#pragma once
// The protocol's messages as the machine reads and writes them, and their
// encoding (cluster.fbs). Decoding verifies first: bytes from the network
// that do not verify, or lack what a message needs, are refused with a reason.
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "cluster/member.hpp"

namespace troupe::cluster {

struct alive_news {
  member_id member;
  std::uint64_t meta_version = 0;
  metadata meta;
};
struct suspect_news {
  member_id member;
  std::string from;
};
struct dead_news {
  member_id member;
  std::string from;
  bool left = false;
};
using news = std::variant<alive_news, suspect_news, dead_news>;
const member_id& subject(const news& n) noexcept;

enum class probe_kind : std::uint8_t { none, ping, indirect_ping, ack, nack };

// One datagram.
struct packet {
  std::string cluster;
  member_id from;
  probe_kind probe = probe_kind::none;
  std::uint32_t seq = 0;
  member_id target;  // ping, indirect_ping
  bool want_nack = false;
  std::vector<news> gossip;
};

// One message of a full-state exchange.
struct sync {
  std::string cluster;
  member_id from;
  bool reply = false;
  bool joined = false;
  std::vector<alive_news> alive;
  std::vector<suspect_news> suspects;
  std::vector<dead_news> dead;
};

std::vector<std::uint8_t> encode(const packet& p);
std::vector<std::uint8_t> encode(const sync& s);
// The bytes one piece of news adds to a packet (about).
std::size_t encoded_size(const news& n);
bool decode(std::span<const std::uint8_t> bytes, packet& out, std::string& why);
bool decode(std::span<const std::uint8_t> bytes, sync& out, std::string& why);

}  // namespace troupe::cluster
