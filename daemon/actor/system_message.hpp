#pragma once
// Messages between the runtime and actors: lifecycle, supervision and
// watches. They travel in the system queue, ahead of user messages.
#include <cstdint>
#include <functional>
#include <string>

#include "actor/message.hpp"
#include "actor/process.hpp"
#include "actor/supervision.hpp"

namespace troupe {

class context;
struct future_result;

enum class terminated_reason : std::uint8_t { stopped = 0, not_found = 1, node_lost = 2 };

const char* to_string(terminated_reason r) noexcept;

enum class system_kind : std::uint8_t {
  started,          // first run: make the actor, deliver Started
  stop,             // stop now, children first
  restart,          // replace the actor instance (from the supervisor)
  resume,           // leave the failed state and go on (from the supervisor)
  watch,            // `who` watches this actor
  unwatch,          // `who` no longer watches this actor
  terminated,       // `who` is gone, for `reason`
  failure,          // child `who` failed with `error`
  continuation,     // run `fn` in this actor's context (futures)
  receive_timeout,  // the receive-timeout timer with generation `token` fired
};

struct system_message : pooled {  // made on one thread, freed on another
  system_message* next_system = nullptr;
  system_kind kind;
  terminated_reason reason = terminated_reason::stopped;
  std::uint64_t token = 0;
  process_ref who;
  std::string error;
  restart_stats stats;  // failure, restart, resume: the child's failure history
  std::function<void(context&)> fn;


  explicit system_message(system_kind k) noexcept : kind(k) {}
  system_message(system_kind k, process_ref w) noexcept : kind(k), who(std::move(w)) {}
};

}  // namespace troupe
