#pragma once
// A journal's answers, waited for: the tests of both stores use these.
#include <future>
#include <string>
#include <vector>

#include "persistence/journal.hpp"

namespace troupe::persistence::test {

inline event ev(std::uint64_t type, std::string text) { return event{0, type, bytes(text.begin(), text.end())}; }
inline std::string text(const bytes& b) { return std::string(b.begin(), b.end()); }

// The journal's answers, waited for.
inline outcome append(journal& j, const std::string& id, std::uint64_t expected, std::vector<event> events) {
  std::promise<outcome> p;
  j.append(id, expected, std::move(events), [&](const outcome& o) { p.set_value(o); });
  return p.get_future().get();
}
inline outcome snap(journal& j, const std::string& id, std::uint64_t seq, std::string data) {
  std::promise<outcome> p;
  j.save_snapshot(id, snapshot{seq, 7, bytes(data.begin(), data.end())}, [&](const outcome& o) { p.set_value(o); });
  return p.get_future().get();
}
inline outcome erase(journal& j, const std::string& id, std::uint64_t to) {
  std::promise<outcome> p;
  j.delete_events(id, to, [&](const outcome& o) { p.set_value(o); });
  return p.get_future().get();
}
inline read_result read(journal& j, const std::string& id, std::uint64_t after = 0, bool with_snapshot = true,
                 std::size_t max = 0) {
  std::promise<read_result> p;
  j.read(id, after, with_snapshot, max, [&](read_result&& r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}


}  // namespace troupe::persistence::test
