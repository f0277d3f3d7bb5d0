// worker_pool: a pool actor that spawns workers as its children and hands
// them jobs in turn. A job that fails throws in its worker; the pool, as the
// worker's parent, supervises it, and the worker comes back as a fresh
// incarnation that takes the next job.
#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include <troupe/troupe.hpp>
#include "worker_pool_generated.h"

namespace {

std::atomic<int64_t> incarnations{0};

struct Worker : troupe::Actor {
  const int64_t incarnation = ++incarnations;
  void receive(troupe::Context& ctx) override {
    if (auto job = ctx.message<worker_pool::Job>()) {
      if (job->fail()) throw std::runtime_error("job " + std::to_string(job->id()) + " failed");
      const int64_t id = job->id();
      const std::string me = ctx.self().to_string();
      ctx.respond<worker_pool::Done>([&](auto& b) {
        return worker_pool::CreateDoneDirect(b, id, me.c_str(), incarnation);
      });
    }
  }
};

struct Pool : troupe::Actor {
  static constexpr int size = 3;
  std::vector<troupe::Pid> workers;
  size_t next = 0;

  void started(troupe::Context& ctx) override {
    for (int i = 0; i < size; ++i) workers.push_back(ctx.spawn("worker-pool.worker"));
    ctx.log(troupe::level::info, "started " + std::to_string(size) + " workers");
  }
  void receive(troupe::Context& ctx) override {
    if (ctx.message<worker_pool::Job>()) {
      // The worker answers the job's sender directly.
      ctx.forward(workers[next++ % workers.size()]);
    } else if (ctx.message<worker_pool::GetWorkers>()) {
      const int count = static_cast<int>(workers.size());
      ctx.respond<worker_pool::Workers>(
          [&](auto& b) { return worker_pool::CreateWorkers(b, count); });
    }
  }
};

}  // namespace

TROUPE_PLUGIN(worker_pool, "1.0.0") {
  plugin.kind<Pool>("worker-pool.pool");
  plugin.kind<Worker>("worker-pool.worker");
  plugin.schema(worker_pool_bfbs);
}
