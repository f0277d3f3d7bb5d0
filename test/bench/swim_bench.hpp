#pragma once
// The membership protocol's workloads in the simulator.
#include <vector>

#include "cluster/member.hpp"

namespace troupe::bench {

// Seconds from a member going silent to the last of the others' dead
// verdicts: {p50, p90} over `trials` runs.
std::vector<double> swim_detect(unsigned members, unsigned trials);
// Seconds for a join to reach every other member (p90 over `trials`).
double swim_converge_p90(unsigned members, unsigned trials);
// Dead verdicts about running members per 1,000 member-minutes.
double swim_false_deaths(unsigned members, double loss, cluster::millis length);
// Bytes sent per member per second in a quiet cluster.
double swim_bytes_per_member_s(unsigned members);
// Simulator steps per second of this machine.
double swim_steps_per_s();

}  // namespace troupe::bench
