// The demo module (demo: true, what `make run` shows): a ring of a
// thousand actors, a token sent round it every 20 ms (50,000 messages a
// second: a node at work, not a core kept busy), and a line every two
// seconds saying how fast. The smallest real module: one key, one kind of
// actor, two timers.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include <uv.h>

#include "actor/actor_system.hpp"
#include "demo_generated.h"
#include "node/log.hpp"
#include "node/module.hpp"

namespace troupe::node {

namespace {

struct demo_settings {
  bool enabled = false;
};

const section<demo_settings>& demo_section() {
  static const section<demo_settings> s = [] {
    section<demo_settings> d("demo", "A ring of actors passing tokens, to see a node at work.");
    d.flag("", &demo_settings::enabled,
           "true runs a ring of 1,000 actors, sends a token round it every 20 ms (50,000 messages a "
           "second) and logs the rate every 2 s.");
    return d;
  }();
  return s;
}

constexpr int ring_size = 1000;
constexpr int lap_every_ms = 20;

struct ring_member final : actor {
  std::shared_ptr<pid> next;
  std::atomic<std::uint64_t>* passes;
  void receive(context& ctx) override {
    if (auto* t = ctx.message<demo::Token>()) {
      passes->fetch_add(1, std::memory_order_relaxed);
      const std::int64_t hops = t->hops() + 1;
      if (hops >= ring_size) return;  // once round the ring
      ctx.send<demo::Token>(*next, [hops](flatbuffers::FlatBufferBuilder& b) { return demo::CreateToken(b, hops); });
    }
  }
};

class demo_module final : public module {
 public:
  int start(node_context& ctx) override {
    if (!ctx.settings().get(demo_section()).enabled) return 0;
    sys_ = &ctx.system();
    std::vector<pid> members;
    for (int i = 0; i < ring_size; ++i) {
      auto link = std::make_shared<pid>();
      links_.push_back(link);
      props p = props::from([link, this] {
        auto m = std::make_unique<ring_member>();
        m->next = link;
        m->passes = &passes_;
        return std::unique_ptr<actor>(std::move(m));
      });
      p.kind = "demo.ring";
      ctx.decorate_kind(p.kind, p);
      members.push_back(sys_->root().spawn(share(std::move(p))));
    }
    for (int i = 0; i < ring_size; ++i) *links_[i] = members[(i + 1) % ring_size];
    first_ = members.front();
    log(level::info, "demo: a ring of " + std::to_string(ring_size) + " actors, a token sent round it every " +
                         std::to_string(lap_every_ms) + " ms (" + std::to_string(ring_size * 1000 / lap_every_ms) +
                         " messages a second; make bench shows what a node can do)");
    uv_timer_init(ctx.loop().uv(), &report_);
    report_.data = this;
    uv_timer_start(&report_, [](uv_timer_t* h) { static_cast<demo_module*>(h->data)->report(); }, 2000, 2000);
    uv_timer_init(ctx.loop().uv(), &lap_);
    lap_.data = this;
    uv_timer_start(&lap_, [](uv_timer_t* h) { static_cast<demo_module*>(h->data)->lap(); }, 0, lap_every_ms);
    timer_on_ = true;
    return 0;
  }

  void loop_closing() override {
    if (timer_on_) {
      uv_close(reinterpret_cast<uv_handle_t*>(&report_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&lap_), nullptr);
    }
    timer_on_ = false;
  }

  // No more laps once the node stops (on the loop thread, which runs the
  // lap timer, before any actor stops): first_ is then the stopper's.
  void stop_taking_work() override {
    if (timer_on_) uv_timer_stop(&lap_);
  }

  // Breaks the ring's reference cycle once no actor runs.
  void actors_stopped() override {
    for (auto& l : links_) *l = pid();
    first_ = pid();
  }

 private:
  void lap() {
    sys_->root().send(first_, make_message<demo::Token>([](flatbuffers::FlatBufferBuilder& b) {
                        return demo::CreateToken(b, 0);
                      }));
  }

  void report() {
    const auto now = std::chrono::steady_clock::now();
    const std::uint64_t n = passes_.load(std::memory_order_relaxed);
    const double secs = std::chrono::duration<double>(now - last_t_).count();
    char buf[256];
    std::snprintf(buf, sizeof buf, "%zu actors, %.0f messages/s, %llu dead letters, %zu timers",
                  sys_->actor_count(), static_cast<double>(n - last_) / secs,
                  static_cast<unsigned long long>(sys_->stats().dead_letters_total()), sys_->loop().pending_timers());
    log(level::info, buf);
    last_ = n;
    last_t_ = now;
  }

  actor_system* sys_ = nullptr;
  std::atomic<std::uint64_t> passes_{0};
  std::vector<std::shared_ptr<pid>> links_;
  uv_timer_t report_{}, lap_{};
  pid first_;
  bool timer_on_ = false;
  std::uint64_t last_ = 0;
  std::chrono::steady_clock::time_point last_t_ = std::chrono::steady_clock::now();
};

}  // namespace

}  // namespace troupe::node

troupe::node::module_def troupe_module_demo() {
  using namespace troupe::node;
  return {"demo", {&demo_section()}, {}, [] { return std::make_unique<demo_module>(); }};
}
