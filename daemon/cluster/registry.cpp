#include "cluster/registry.hpp"

#include <nlohmann/json.hpp>

namespace troupe::cluster {

std::optional<record> parse_record(const std::string& text, std::string& why) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    why = "not a JSON object";
    return std::nullopt;
  }
  record r;
  const auto name = j.find("name");
  const auto address = j.find("address");
  const auto generation = j.find("generation");
  if (name == j.end() || !name->is_string() || name->get<std::string>().empty()) {
    why = "no name";
    return std::nullopt;
  }
  if (address == j.end() || !address->is_string() || address->get<std::string>().empty()) {
    why = "no address";
    return std::nullopt;
  }
  if (generation == j.end() || !generation->is_number_unsigned()) {
    why = "no generation";
    return std::nullopt;
  }
  r.name = name->get<std::string>();
  r.address = address->get<std::string>();
  r.generation = generation->get<std::uint64_t>();
  if (const auto meta = j.find("meta"); meta != j.end() && meta->is_object())
    for (const auto& [k, v] : meta->items())
      if (v.is_string()) r.meta[k] = v.get<std::string>();
  if (const auto leaving = j.find("leaving"); leaving != j.end() && leaving->is_boolean()) r.leaving = leaving->get<bool>();
  return r;
}

std::string format_record(const record& r) {
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [k, v] : r.meta) meta[k] = v;
  return nlohmann::json{{"name", r.name},
                        {"address", r.address},
                        {"generation", r.generation},
                        {"meta", meta},
                        {"leaving", r.leaving}}
      .dump();
}

void registry::reset(const std::vector<record>& all, millis now) {
  std::map<std::string, const record*> by_name;
  for (const record& r : all) by_name[r.name] = &r;
  for (auto& [name, e] : members_)
    if (up(e.m.state) && by_name.count(name) == 0) gone(e, member_state::dead, now);
  for (const auto& [name, r] : by_name) put(*r, now);
  listed_ = true;
}

void registry::put(const record& r, millis now) {
  auto it = members_.find(r.name);
  if (it != members_.end() && r.generation < it->second.m.id.generation) return;  // an older start's: stale
  if (it != members_.end() && r.generation > it->second.m.id.generation && up(it->second.m.state))
    gone(it->second, member_state::dead, now);  // restarted: that start is over
  if (it != members_.end() && it->second.m.id.generation == r.generation && !up(it->second.m.state) && r.leaving)
    return;  // gone already
  if (it == members_.end() || it->second.m.id.generation != r.generation || !up(it->second.m.state)) {
    // New, a new start, or the same start registered again after its
    // record was lost (its lease ran out while it could not reach the
    // service): a join, the last one counted as a later incarnation.
    const std::uint32_t incarnation =
        it != members_.end() && it->second.m.id.generation == r.generation ? it->second.m.id.incarnation + 1 : 0;
    entry e;
    e.m.id = {r.name, r.address, r.generation, incarnation};
    e.m.since = now;
    e.m.meta = r.meta;
    e.m.meta_version = 1;
    const auto u = unreachable_.find(r.name);
    e.unreachable = r.name != self_ && u != unreachable_.end() && u->second.first == r.generation && u->second.second;
    e.m.state = e.unreachable ? member_state::suspect : member_state::alive;
    if (r.leaving) e.m.state = member_state::left;  // a start first seen leaving: no news of it
    it = members_.insert_or_assign(r.name, std::move(e)).first;
    if (r.leaving) return;
    it->second.announced = true;
    event(member_event::kind::joined, it->second.m);
    if (it->second.unreachable) event(member_event::kind::suspect, it->second.m);
    return;
  }
  entry& e = it->second;
  if (r.leaving) {
    gone(e, member_state::left, now);
    return;
  }
  if (e.m.meta != r.meta || e.m.id.address != r.address) {
    e.m.meta = r.meta;
    e.m.id.address = r.address;
    ++e.m.meta_version;
    event(member_event::kind::updated, e.m);
  }
}

void registry::remove(const std::string& name, millis now) {
  auto it = members_.find(name);
  if (it == members_.end() || !up(it->second.m.state)) return;
  gone(it->second, member_state::dead, now);
}

void registry::gone(entry& e, member_state how, millis now) {
  e.m.state = how;
  e.m.since = now;
  event(how == member_state::left ? member_event::kind::left : member_event::kind::dead, e.m);
}

void registry::reachability(const std::vector<member>& swim, millis now) {
  unreachable_.clear();
  for (const member& m : swim)
    unreachable_[m.id.name] = {m.id.generation, m.state == member_state::suspect || m.state == member_state::dead};
  for (auto& [name, e] : members_) {
    if (!up(e.m.state) || name == self_) continue;
    const auto u = unreachable_.find(name);
    // A member SWIM has not heard of yet (or only of an older start) is not
    // held against it.
    const bool now_unreachable = u != unreachable_.end() && u->second.first == e.m.id.generation && u->second.second;
    if (now_unreachable == e.unreachable) continue;
    e.unreachable = now_unreachable;
    e.m.state = now_unreachable ? member_state::suspect : member_state::alive;
    e.m.since = now;
    event(now_unreachable ? member_event::kind::suspect : member_event::kind::alive, e.m);
  }
}

void registry::advance(millis now) {
  for (auto it = members_.begin(); it != members_.end();) {
    if (!up(it->second.m.state) && now >= it->second.m.since + retention_) {
      if (it->second.announced) event(member_event::kind::forgotten, it->second.m);
      it = members_.erase(it);
    } else {
      ++it;
    }
  }
}

std::vector<member> registry::members() const {
  std::vector<member> out;
  out.reserve(members_.size());
  for (const auto& [name, e] : members_) out.push_back(e.m);
  return out;
}

const member* registry::find(const std::string& name) const {
  const auto it = members_.find(name);
  return it == members_.end() ? nullptr : &it->second.m;
}

}  // namespace troupe::cluster
