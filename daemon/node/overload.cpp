#include "node/overload.hpp"

#include <malloc.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include "actor/actor_system.hpp"
#include "actor/block_pool.hpp"
#include "node/log.hpp"

namespace troupe::node {

namespace {

// cgroup v1 says "no limit" with a number near 2^63.
constexpr std::uint64_t no_limit = std::uint64_t{1} << 60;

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// A limit file's value, or 0 for "max", unlimited, or unreadable.
std::uint64_t limit_in(const std::string& path) {
  const std::string v = first_line(path);
  if (v.empty() || v == "max" || v.find_first_not_of("0123456789") != std::string::npos) return 0;
  const std::uint64_t n = std::stoull(v);
  return n >= no_limit ? 0 : n;
}

struct mount {
  std::string root;   // the mount's root inside the cgroup hierarchy
  std::string point;  // where it is mounted
};

// The cgroup v2 mount, and the v1 memory controller's.
void find_mounts(mount& v2, mount& v1_memory) {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    // id parent major:minor root point options [optional...] - type source super
    std::istringstream f(line);
    std::string id, parent, dev, root, point, options, word;
    f >> id >> parent >> dev >> root >> point >> options;
    while (f >> word && word != "-") {
    }
    std::string type, source, super;
    f >> type >> source >> super;
    if (type == "cgroup2" && v2.point.empty()) v2 = {root, point};
    if (type == "cgroup" && v1_memory.point.empty()) {
      std::istringstream opts(super);
      for (std::string o; std::getline(opts, o, ',');)
        if (o == "memory") v1_memory = {root, point};
    }
  }
}

// The lowest limit from `dir` up to the mount point, over the given files.
void walk_up(const mount& m, std::string path, const std::vector<const char*>& files,
             memory_limit& best) {
  if (m.root != "/" && path.compare(0, m.root.size(), m.root) == 0) path.erase(0, m.root.size());
  for (;;) {
    const std::string dir = m.point + (path == "/" ? "" : path);
    for (const char* file : files)
      if (const std::uint64_t n = limit_in(dir + "/" + file); n != 0 && n < best.bytes)
        best = {n, "cgroup " + path + " (" + file + ")"};
    if (path.empty() || path == "/") break;
    const auto slash = path.rfind('/');
    path = slash == 0 ? "/" : path.substr(0, slash);
  }
}

std::atomic<std::uint64_t> pool_returned{0};
std::atomic<std::uint64_t> trims{0};

}  // namespace

memory_limit find_memory_limit() {
  memory_limit best{std::numeric_limits<std::uint64_t>::max(), ""};
  {
    std::ifstream in("/proc/meminfo");
    for (std::string key, unit; in >> key;) {
      std::uint64_t kib = 0;
      in >> kib >> unit;
      if (key == "MemTotal:") {
        best = {kib * 1024, "the machine's memory"};
        break;
      }
    }
  }
  mount v2, v1;
  find_mounts(v2, v1);
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    // hierarchy-id:controllers:path
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty() && !v2.point.empty())
      walk_up(v2, path, {"memory.max", "memory.high"}, best);
    std::istringstream c(controllers);
    for (std::string name; std::getline(c, name, ',');)
      if (name == "memory" && !v1.point.empty()) walk_up(v1, path, {"memory.limit_in_bytes"}, best);
  }
  if (best.bytes == std::numeric_limits<std::uint64_t>::max()) best = {0, "nothing (unknown)"};
  return best;
}

bool parse_queue_budget(const std::string& text, queue_budget_setting& out, std::string& why) {
  using mode = queue_budget_setting::mode;
  if (text == "auto") {
    out = {mode::automatic, 0};
    return true;
  }
  if (text == "none") {
    out = {mode::none, 0};
    return true;
  }
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0 || digits > 15) {
    why = "expected auto, none, a size such as 512MiB, or a share such as 40%";
    return false;
  }
  const std::uint64_t n = std::stoull(text.substr(0, digits));
  std::string unit = text.substr(digits);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  if (unit == "%") {
    if (n < 1 || n > 90) {
      why = "a share of the memory limit must be from 1% to 90%";
      return false;
    }
    out = {mode::percent, n};
    return true;
  }
  static const std::pair<const char*, std::uint64_t> units[] = {
      {"", 1},           {"B", 1},
      {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
      {"KB", 1000ull},   {"MB", 1000000ull}, {"GB", 1000000000ull}, {"TB", 1000000000000ull}};
  for (const auto& [name, scale] : units)
    if (unit == name) {
      const std::uint64_t bytes = n * scale;
      if (bytes < (1u << 20)) {
        why = "a budget under 1 MiB would refuse almost every message";
        return false;
      }
      out = {mode::bytes, bytes};
      return true;
    }
  why = "unknown unit '" + unit + "' (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB, or %)";
  return false;
}

std::string to_string(const queue_budget_setting& s) {
  switch (s.how) {
    case queue_budget_setting::mode::automatic: return "auto";
    case queue_budget_setting::mode::none: return "none";
    case queue_budget_setting::mode::percent: return std::to_string(s.value) + "%";
    case queue_budget_setting::mode::bytes: return human_bytes(s.value);
  }
  return "auto";
}

std::string human_bytes(std::uint64_t n) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0 || v >= 100 || v == static_cast<double>(static_cast<std::uint64_t>(v)))
    std::snprintf(buf, sizeof buf, "%.0f %s", v, units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::uint64_t resolve_queue_budget(const queue_budget_setting& s, const memory_limit& m,
                                   std::string& said) {
  using mode = queue_budget_setting::mode;
  switch (s.how) {
    case mode::none:
      said = "no budget for queued messages (node.max_queued_bytes: none): a flood can use all memory";
      return 0;
    case mode::bytes:
      said = "queued messages may hold " + human_bytes(s.value) + " (node.max_queued_bytes)";
      return s.value;
    case mode::automatic:
    case mode::percent: {
      const std::uint64_t share = s.how == mode::percent ? s.value : 50;
      if (m.bytes == 0) {
        said = "no budget for queued messages: the memory limit is unknown (set node.max_queued_bytes)";
        return 0;
      }
      const std::uint64_t bytes = std::max<std::uint64_t>(m.bytes / 100 * share, 16u << 20);
      said = "queued messages may hold " + human_bytes(bytes) + ", " + std::to_string(share) +
             "% of the " + human_bytes(m.bytes) + " limit of " + m.source +
             " (node.max_queued_bytes)";
      return bytes;
    }
  }
  return 0;
}

// ---------------------------------------------------------------- housekeeper

housekeeper::housekeeper(std::chrono::milliseconds every) : every_(every) {
  thread_ = std::thread([this] { run(); });
}

housekeeper::~housekeeper() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::uint64_t housekeeper::pool_bytes_returned() noexcept {
  return pool_returned.load(std::memory_order_relaxed);
}
std::uint64_t housekeeper::heap_trims() noexcept { return trims.load(std::memory_order_relaxed); }

void housekeeper::run() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, every_, [this] { return stop_; })) {
    lock.unlock();
    once();
    lock.lock();
  }
}

void housekeeper::once() {
  // Not worth a walk below this much free memory.
  constexpr std::size_t worth = 8u << 20;
  if (block_pool::stats().idle_bytes >= worth) {
    const std::size_t returned = block_pool::release_idle();
    pool_returned.fetch_add(returned, std::memory_order_relaxed);
    if (returned >= (64u << 20))
      log(level::info, "memory: " + human_bytes(returned) +
                           " of free message memory returned to the system");
  }
  if (mallinfo2().fordblks >= worth) {
    malloc_trim(0);
    trims.fetch_add(1, std::memory_order_relaxed);
  }
}

// ---------------------------------------------------------------- overload_log

namespace {

// "sink (kind test.sink, 10000 queued)", the fullest first.
std::string fullest_mailboxes(actor_system& sys, std::size_t n) {
  struct entry {
    std::size_t depth;
    std::string text;
  };
  std::vector<entry> top;
  sys.registry().for_each([&](process& p) {
    auto* c = dynamic_cast<context*>(&p);
    if (c == nullptr) return;
    const std::size_t depth = c->mailbox_depth();
    if (depth == 0) return;
    if (top.size() == n && depth <= top.back().depth) return;
    const props& pr = c->props();
    std::string text = c->id() + " (kind " + (pr.kind.empty() ? "(none)" : pr.kind) + ", " +
                       std::to_string(depth) + " queued";
    if (pr.mailbox.kind != mailbox_kind::unbounded)
      text += " of " + std::to_string(pr.mailbox.capacity);
    text += ")";
    top.push_back({depth, std::move(text)});
    std::sort(top.begin(), top.end(), [](const entry& a, const entry& b) { return a.depth > b.depth; });
    if (top.size() > n) top.pop_back();
  });
  std::string out;
  for (const entry& e : top) out += (out.empty() ? "" : ", ") + e.text;
  return out.empty() ? "none holds messages now" : out;
}

}  // namespace

void overload_log::check(actor_system& sys, std::chrono::steady_clock::time_point now) {
  const system_stats& st = sys.stats();
  const std::uint64_t budget_drops =
      st.dead_letters[static_cast<std::size_t>(dead_letter_reason::over_budget)].load(std::memory_order_relaxed);
  const std::uint64_t full_drops =
      st.dead_letters[static_cast<std::size_t>(dead_letter_reason::mailbox_full)].load(std::memory_order_relaxed);
  const bool news = budget_drops != over_budget_ || full_drops != mailbox_full_;
  if (!news) {
    // Quiet for a while after the budget bit, and room again: say so.
    if (budget_biting_ && now - last_ >= std::chrono::seconds(10) && sys.queue_pressure() < 90) {
      budget_biting_ = false;
      log(level::info, "overload: queued messages are back under the budget (" +
                           human_bytes(static_cast<std::uint64_t>(std::max<std::int64_t>(
                               0, queued_message_bytes()))) +
                           " of " + human_bytes(sys.queue_budget()) + ")");
    }
    return;
  }
  if (last_ != std::chrono::steady_clock::time_point{} && now - last_ < std::chrono::seconds(10))
    return;
  const double seconds =
      last_ == std::chrono::steady_clock::time_point{}
          ? 0
          : std::chrono::duration<double>(now - last_).count();
  const std::string since = seconds == 0 ? "" : " in the last " + std::to_string(static_cast<long>(seconds)) + " s";
  std::string line = "overload:";
  if (budget_drops != over_budget_) {
    budget_biting_ = true;
    line += " " + std::to_string(budget_drops - over_budget_) + " messages refused" + since +
            ": queued messages reached the node's budget of " + human_bytes(sys.queue_budget()) +
            " (node.max_queued_bytes; " +
            human_bytes(static_cast<std::uint64_t>(std::max<std::int64_t>(0, queued_message_bytes()))) +
            " queued now).";
  }
  if (full_drops != mailbox_full_)
    line += " " + std::to_string(full_drops - mailbox_full_) + " messages dropped" + since +
            " by full mailboxes (capacity: kinds.all.mailbox, kinds.<kind>.mailbox).";
  line += " Fullest mailboxes: " + fullest_mailboxes(sys, 3);
  log(level::warning, line);
  over_budget_ = budget_drops;
  mailbox_full_ = full_drops;
  last_ = now;
}

}  // namespace troupe::node
