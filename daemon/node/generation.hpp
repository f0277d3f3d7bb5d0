#pragma once
// A node's generation: new and higher at every start, so that the cluster
// tells a restarted node from the one before it at once.
#include <cstdint>
#include <string>

namespace troupe::node {

// The generation for this start: above the one kept in `state_dir` (file
// `generation`) and at least `now_ms` (milliseconds since the epoch, which
// keeps it rising when the folder is new or lost). With a state directory
// it is written back before it is used; false with `error` set when it
// cannot be (the node must not start with a generation it may hand out
// again). Without one (empty `state_dir`) it is `now_ms`.
bool next_generation(const std::string& state_dir, std::uint64_t now_ms, std::uint64_t& out, std::string& error);

}  // namespace troupe::node
