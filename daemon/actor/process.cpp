#include "actor/process.hpp"

#include "actor/actor_system.hpp"

namespace troupe {

namespace {
const std::string no_address;
}

std::string pid::id() const { return p_ ? p_->id() : std::string(); }

const std::string& process::address() const noexcept { return sys_->address(); }
std::uint64_t process::generation() const noexcept { return sys_->generation(); }

const std::string& pid::address() const { return p_ ? p_->address() : no_address; }

std::string pid::to_string() const {
  if (!p_) return "<none>";
  return address() + "/" + id();
}

}  // namespace troupe
