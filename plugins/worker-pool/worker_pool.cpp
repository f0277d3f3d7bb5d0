// worker_pool: a pool actor with a round-robin router of workers in front
// of it. A job that fails throws in its worker; the router supervises its
// workers (at most 5 restarts of one within 10 s, each after a short
// backoff), and the worker comes back as a fresh incarnation that takes
// its next job.
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>

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
  troupe::Pid workers;

  void started(troupe::Context& ctx) override {
    const troupe::Props supervision = troupe::Props()
                                          .restarts(5, std::chrono::seconds(10))
                                          .backoff(std::chrono::milliseconds(1), std::chrono::milliseconds(100));
    workers = ctx.spawn_pool("worker-pool.worker", size, troupe::Routing::round_robin, nullptr, &supervision);
    ctx.log(troupe::level::info, "started " + std::to_string(size) + " workers");
  }
  void receive(troupe::Context& ctx) override {
    if (ctx.message<worker_pool::Job>()) {
      // The router hands it to the next worker, which answers the job's sender.
      ctx.forward(workers);
    } else if (ctx.message<worker_pool::GetWorkers>()) {
      ctx.routees(workers, [](troupe::Context& c, bool answered, std::span<const troupe::Pid> all) {
        const int count = answered ? static_cast<int>(all.size()) : -1;
        c.respond<worker_pool::Workers>([&](auto& b) { return worker_pool::CreateWorkers(b, count); });
      });
    }
  }
};

}  // namespace

TROUPE_PLUGIN(worker_pool, "1.0.0") {
  plugin.kind<Pool>("worker-pool.pool");
  plugin.kind<Worker>("worker-pool.worker");
  plugin.schema(worker_pool_bfbs);
}
