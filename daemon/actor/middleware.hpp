#pragma once
// Ready-made middleware, and examples of writing one: logging and metrics
// around message handling, a header stamped on every outgoing message, and
// logging around spawns. Add them to Props:
//
//   props p = props::of<Worker>();
//   p.receive_hooks.push_back(middleware::count_receive(metrics));
//   p.receive_hooks.push_back(middleware::log_receive(sink));
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "actor/props.hpp"

namespace troupe::middleware {

// Where log lines go (the node passes its logger).
using log_sink = std::function<void(std::string_view line)>;

// One line per message handled: the actor, its kind, the message type and
// how long the handler took; a handler that throws is logged and the
// exception goes on to the supervisor as usual.
receive_middleware log_receive(log_sink sink);

// Counters for one set of actors (one Props, usually), read by metrics.
struct receive_metrics {
  std::atomic<std::uint64_t> messages{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> handler_nanoseconds{0};
};
receive_middleware count_receive(std::shared_ptr<receive_metrics> m);

// Sets header `key` to `value` on every message the actor sends.
send_middleware stamp_header(std::string key, std::string value);

// One line per spawn: the new actor and its kind, or why it was refused.
spawn_middleware log_spawn(log_sink sink);

}  // namespace troupe::middleware
