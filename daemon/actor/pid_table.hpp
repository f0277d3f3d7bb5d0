#pragma once
// A PID as the troupe.system.Pid table that messages and events carry.
#include "actor/process.hpp"
#include "system_generated.h"

namespace troupe {

// Null for no process.
inline flatbuffers::Offset<system::Pid> encode_pid(flatbuffers::FlatBufferBuilder& b, const process* p) {
  if (p == nullptr) return 0;
  const std::string id = p->id();
  return system::CreatePidDirect(b, p->address().c_str(), id.c_str(), p->generation());
}

}  // namespace troupe
