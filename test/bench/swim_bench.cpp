// The membership protocol's workloads, in the simulator (simulated time;
// only swim_sim_steps_per_s depends on this machine).
#include "swim_bench.hpp"

#include <algorithm>
#include <chrono>
#include <random>

#include "sim.hpp"

namespace troupe::bench {

using namespace troupe::cluster;
using namespace troupe::cluster::sim;
using namespace std::chrono_literals;

namespace {

simulator cluster_of(unsigned n, std::uint64_t seed, network net = {}) {
  simulator s(seed, swim_options::lan(), net);
  for (unsigned i = 0; i < n; ++i) s.add(i, {0, 1, 2});
  for (unsigned i = 0; i < n; ++i) s.start(i);
  for (int t = 0; t < 120 && !s.converged(); ++t) s.run_for(1s);
  return s;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

}  // namespace

std::vector<double> swim_detect(unsigned members, unsigned trials) {
  std::vector<double> took;
  for (unsigned t = 0; t < trials; ++t) {
    simulator s = cluster_of(members, 100 + t);
    const unsigned victim = 1 + t % (members - 1);
    const std::string name = s.name(victim);
    const millis at = s.now();
    s.dead_seen.clear();
    s.kill(victim);
    while (s.dead_seen[name].size() < members - 1 && s.now() - at < 300s) s.run_for(100ms);
    took.push_back(std::chrono::duration<double>(s.dead_seen[name].empty() ? 300s : s.dead_seen[name].back() - at).count());
  }
  return {quantile(took, 0.5), quantile(took, 0.9)};
}

double swim_converge_p90(unsigned members, unsigned trials) {
  std::vector<double> took;
  for (unsigned t = 0; t < trials; ++t) {
    simulator s = cluster_of(members - 1, 200 + t);
    s.add(members - 1, {0, 1, 2});
    const millis at = s.now();
    s.joined_seen.clear();
    s.start(members - 1);
    const std::string name = s.name(members - 1);
    while (s.joined_seen[name].size() < members - 1 && s.now() - at < 120s) s.run_for(50ms);
    took.push_back(std::chrono::duration<double>(s.joined_seen[name].size() < members - 1 ? 120s : s.joined_seen[name].back() - at).count());
  }
  return quantile(took, 0.9);
}

double swim_false_deaths(unsigned members, double loss, millis length) {
  simulator s = cluster_of(members, 300, {loss, 0.0, 1ms, 10ms});
  s.run_for(length);
  const double member_minutes = members * std::chrono::duration<double>(length).count() / 60.0;
  return static_cast<double>(s.false_deaths()) * 1000.0 / member_minutes;
}

double swim_bytes_per_member_s(unsigned members) {
  simulator s = cluster_of(members, 400);
  s.run_for(60s);  // past the joins' news
  const std::uint64_t before = s.bytes();
  const millis length = 300s;
  s.run_for(length);
  return static_cast<double>(s.bytes() - before) / members / std::chrono::duration<double>(length).count();
}

double swim_steps_per_s() {
  const auto t0 = std::chrono::steady_clock::now();
  simulator s = cluster_of(16, 500, {0.05, 0.01, 1ms, 20ms});
  s.run_for(600s);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(s.steps()) / secs;
}

}  // namespace troupe::bench
