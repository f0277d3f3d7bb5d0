#include "modules/admin/admin_api.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include "actor/actor_system.hpp"
#include "cluster_generated.h"
#include "system_generated.h"
#include "plugin/plugin_host.hpp"
#include "remote/transport.hpp"

namespace troupe::node {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr long long default_request_timeout_ms = 5000;
constexpr long long max_request_timeout_ms = 60000;
constexpr std::size_t default_actor_limit = 1000;

// What an actor was spawned with, as GET /v1/actors/{id} shows it.
json props_json(const props& p) {
  const char* kind = "unbounded";
  switch (p.mailbox.kind) {
    case mailbox_kind::unbounded: break;
    case mailbox_kind::bounded_block: kind = "block"; break;
    case mailbox_kind::bounded_drop_newest: kind = "drop_newest"; break;
    case mailbox_kind::bounded_drop_oldest: kind = "drop_oldest"; break;
  }
  json out = {{"mailbox", kind}, {"throughput", p.mailbox.throughput}};
  if (p.mailbox.kind != mailbox_kind::unbounded) out["capacity"] = p.mailbox.capacity;
  static const supervisor_strategy node_default{};
  const supervisor_strategy& s = p.supervisor ? *p.supervisor : node_default;
  json sup = {{"scope", s.applies_to == supervisor_strategy::scope::all_for_one ? "all_for_one" : "one_for_one"},
              {"max_restarts", s.max_restarts},
              {"restart_window_ms", std::chrono::duration_cast<std::chrono::milliseconds>(s.window).count()},
              {"decider", static_cast<bool>(s.decide)}};
  if (s.backoff.initial.count() != 0)
    sup["backoff_ms"] = {s.backoff.initial.count(), s.backoff.max.count()};
  out["supervision"] = std::move(sup);
  return out;
}

// The path's segments, each decoded on its own: an id may hold a "/" as %2F.
std::vector<std::string> segments(std::string_view uri) {
  uri = uri.substr(0, uri.find('?'));
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= uri.size()) {
    std::size_t end = uri.find('/', start);
    if (end == std::string_view::npos) end = uri.size();
    if (end > start) out.push_back(url_decode(uri.substr(start, end - start), false));
    start = end + 1;
  }
  return out;
}

// Compares without leaking where the first difference is.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

// A spawn that made no actor, here or on another node: one answer for each reason.
void refuse(const admin_request& r, spawn_error e, const std::string& why) {
  switch (e) {
    case spawn_error::none:
    case spawn_error::refused: return r.error(403, "refused", why);
    case spawn_error::name_taken: return r.error(409, "name_taken", why);
    case spawn_error::invalid_name: return r.error(400, "invalid_name", why);
    case spawn_error::shutting_down: return r.error(503, "stopping", why);
    case spawn_error::unknown_kind: return r.error(404, "unknown_kind", why);
    case spawn_error::not_allowed: return r.error(403, "forbidden", why);
    case spawn_error::unreachable: return r.error(503, "unavailable", why);
    case spawn_error::timed_out: return r.error(504, "timeout", why);
  }
  r.error(500, "internal", why);
}

}  // namespace

admin_api::admin_api(const std::string& listen, std::string token, http_limits limits, node_context& ctx)
    : ctx_(ctx), sys_(ctx.system()), plugins_(ctx.find<plugin::host>()), remote_(ctx.find<remote::transport>()),
      token_(std::move(token)) {
  server_ = std::make_unique<http_server>(
      "admin", listen, limits, [this](const std::shared_ptr<http_request>& r) { on_request(r); });
  stats_->connections = &server_->stats();
}

admin_api::~admin_api() = default;

int admin_api::port() const { return server_->port(); }

void admin_api::set_token(std::string token) {
  std::lock_guard lock(info_mu_);
  token_ = std::move(token);
}

void admin_api::on_request(const std::shared_ptr<http_request>& http) {
  // The server's one thread answers every client: a full back-pressure
  // mailbox refuses what it sends (counted) rather than holding it. Sends
  // check for room first, so this only settles a race with other senders.
  no_waiting_for_room never_here;
  admin_request r{http, stats_, http->method(), segments(http->path())};
  try {
    handle(r);
  } catch (const std::exception& e) {
    r.error(500, "internal", e.what());  // dropped if it answered already
  }
}

void admin_api::handle(const admin_request& r) {
  const auto& p = r.path;
  const bool get = r.method == "GET" || r.method == "HEAD";
  const node_context::phase st = ctx_.current_phase();
  using phase = node_context::phase;

  if (p.size() == 1 && p[0] == "healthz") {
    if (!get) return r.error(405, "method_not_allowed", "use GET");
    if (std::string why = ctx_.health ? ctx_.health() : std::string(); !why.empty())
      return r.reply(503, {{"status", "stalled"}, {"reason", why}});
    return r.reply(200, {{"status", "ok"}});
  }
  if (p.size() == 1 && p[0] == "readyz") {
    if (!get) return r.error(405, "method_not_allowed", "use GET");
    if (st == phase::ready) {
      if (std::string why = ctx_.not_ready(); !why.empty())
        return r.reply(503, {{"status", "not_ready"}, {"reason", why}});
      if (std::vector<std::string> detail = ctx_.readiness_details(); !detail.empty())
        return r.reply(200, {{"status", "ready"}, {"detail", std::move(detail)}});
      return r.reply(200, {{"status", "ready"}});
    }
    return r.reply(503, {{"status", st == phase::starting ? "starting" : "stopping"}});
  }
  if (p.empty() || p[0] != "v1")
    return r.error(404, "not_found", "no such endpoint: " + r.method + " /" +
                                         (p.empty() ? "" : p[0]));

  std::string token;
  {
    std::lock_guard lock(info_mu_);
    token = token_;
  }
  if (!token.empty()) {
    const std::string auth = r.http->header("Authorization");
    constexpr std::string_view bearer = "Bearer ";
    if (auth.compare(0, bearer.size(), bearer) != 0 ||
        !same_secret(std::string_view(auth).substr(bearer.size()), token))
      return r.error(401, "unauthorized", "this node wants 'Authorization: Bearer <token>'");
  }

  // Routes of the modules first: one may answer for a path below.
  if (ctx_.route(r)) return;
  const std::string what = p.size() > 1 ? p[1] : "";
  if (p.size() == 2 && what == "node") {
    if (!get) return r.error(405, "method_not_allowed", "use GET");
    json j = ctx_.node_info();
    j["state"] = st == phase::ready ? "ready" : st == phase::starting ? "starting" : "stopping";
    j["actors"] = sys_.actor_count();
    j["dispatcher_threads"] = sys_.dispatcher().threads();
    j["messages_processed"] = sys_.dispatcher().processed();
    j["dead_letters"] = sys_.stats().dead_letters_total();
    return r.reply(200, j);
  }
  if (p.size() == 2 && what == "members") {
    if (!get) return r.error(405, "method_not_allowed", "use GET");
    // Only this node, until a module that knows the cluster answers.
    const json info = ctx_.node_info();
    const json a = !info.value("advertise", json(nullptr)).is_null() ? info["advertise"]
                                                                     : info.value("listen", json(nullptr));
    const json self = {{"name", info.value("name", "")},
                       {"address", a},
                       {"status", "up"},
                       {"generation", info.value("generation", json(nullptr))},
                       {"self", true}};
    return r.reply(200, {{"members", json::array({self})}});
  }
  if (what == "actors") {
    if (p.size() == 2) {
      if (get) return list_actors(r);
      if (r.method == "POST") return spawn(r);
      return r.error(405, "method_not_allowed", "use GET to list or POST to spawn");
    }
    return route_actor(r, p[2], p.size() > 3 ? p[3] : "");
  }
  return r.error(404, "not_found", "no such endpoint: " + r.method + " /v1/" + what);
}

void admin_api::route_actor(const admin_request& r, const std::string& id, const std::string& action) {
  if (r.path.size() > 4) return r.error(404, "not_found", "no such endpoint under /v1/actors");
  if (action.empty()) {
    if (r.method == "DELETE") return stop(r, id);
    if (r.method == "GET" || r.method == "HEAD") {
      pid at = actor_at(id);
      if (at && at.get()->address() != sys_.address())
        return r.error(409, "remote_actor", "'" + id + "' is an actor of the node at " + std::string(at.get()->address()) +
                                                ": its admin API knows its kind and mailbox");
      process_ref p = at ? process_ref(at.get()) : process_ref();
      auto* c = dynamic_cast<context*>(p.get());
      if (c == nullptr) return unknown_actor(r, id);
      return r.reply(200, {{"id", id},
                           {"pid", pid(std::move(p)).to_string()},
                           {"kind", c->props().kind},
                           {"mailbox", c->mailbox_depth()},
                           {"props", props_json(c->props())}});
    }
    return r.error(405, "method_not_allowed", "use GET or DELETE");
  }
  if (action == "send" || action == "request") {
    if (r.method != "POST") return r.error(405, "method_not_allowed", "use POST");
    return send(r, id, action == "request");
  }
  return r.error(404, "not_found", "no such endpoint: /v1/actors/{id}/" + action);
}

void admin_api::list_actors(const admin_request& r) {
  const std::string kind = r.var("kind");
  std::size_t limit = default_actor_limit;
  if (const std::string l = r.var("limit"); !l.empty()) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(l.c_str(), &end, 10);
    if (*end != '\0' || v == 0)
      return r.error(400, "bad_request", "limit must be a positive number, not '" + l + "'");
    limit = static_cast<std::size_t>(v);
  }
  struct row {
    std::uint64_t seq;
    json j;
  };
  std::vector<row> rows;
  std::size_t total = 0;
  sys_.registry().for_each([&](process& p) {
    auto* c = dynamic_cast<context*>(&p);
    if (c == nullptr || (!kind.empty() && c->props().kind != kind)) return;
    ++total;
    rows.push_back({c->seq(),
                    {{"id", c->id()},
                     {"kind", c->props().kind},
                     {"mailbox", c->mailbox_depth()},
                     {"parent", c->parent() ? json(c->parent().id()) : json(nullptr)}}});
  });
  // Oldest first; the limit keeps the oldest.
  std::sort(rows.begin(), rows.end(), [](const row& a, const row& b) { return a.seq < b.seq; });
  json list = json::array();
  for (std::size_t i = 0; i < rows.size() && i < limit; ++i) list.push_back(std::move(rows[i].j));
  r.reply(200, {{"actors", list}, {"total", total}, {"truncated", total > limit}});
}

void admin_api::spawn(const admin_request& r) {
  if (ctx_.stopping()) return r.error(503, "stopping", "the node is stopping and admits no new actors");
  json body;
  if (!r.object(body)) return;
  for (const auto& [key, v] : body.items())
    if (key != "kind" && key != "name" && key != "node")
      return r.error(400, "bad_request", "unknown field '" + key + "' (expected kind, name, node)");
  if (!body.contains("kind") || !body["kind"].is_string())
    return r.error(400, "bad_request", "'kind' (a string) is required");
  if (body.contains("name") && !body["name"].is_string())
    return r.error(400, "bad_request", "'name' must be a string");
  if (body.contains("node") && !body["node"].is_string())
    return r.error(400, "bad_request", "'node' must be a string (a node address)");
  const std::string kind = body["kind"];
  // The same checks wherever the actor is to live.
  const std::string name = body.value("name", std::string());
  if (body.contains("name") && name.empty())
    return r.error(400, "invalid_name", spawn_refusal(spawn_error::invalid_name, kind, name));
  if (name.find('/') != std::string::npos)
    return r.error(400, "invalid_name", "an actor name may not contain '/'");
  if (body.contains("node") && body["node"] != sys_.address()) {
    if (remote_ == nullptr)
      return r.error(400, "bad_request", "this node has no node-to-node transport (node.listen)");
    remote_->spawn(body["node"], kind, name, std::chrono::seconds(5),
                   [r, kind, node = body["node"].get<std::string>()](remote::spawn_reply reply) {
                     if (reply.status != spawn_error::none) return refuse(r, reply.status, reply.error);
                     r.reply(201, {{"id", reply.who.id()}, {"pid", reply.who.to_string()}, {"kind", kind}, {"node", node}});
                   });
    return;
  }
  const spawn_result res = sys_.root().spawn_kind(kind, name);
  if (!res) return refuse(r, res.error, spawn_refusal(res.error, kind, name));
  r.reply(201, {{"id", res.pid.id()}, {"pid", res.pid.to_string()}, {"kind", kind}});
}

void admin_api::unknown_actor(const admin_request& r, const std::string& id) const {
  const std::size_t slash = id.find('/');
  if (slash != std::string::npos && std::string_view(id).substr(0, slash) != sys_.address())
    return r.error(404, "unknown_actor",
                   "no actor '" + id + "': " + id.substr(0, slash) +
                       " is not a node this one has a link with (a member, a seed, or a node it spawned on)");
  r.error(404, "unknown_actor", "no actor '" + id + "' on this node");
}

// An actor's id on this node, or a PID as commands print it (ADDRESS/ID),
// of this node or of a node this one has a link with (a peer: a member, a
// seed, a node it spawned on). Empty if none: an address typed by hand
// makes no new link.
pid admin_api::actor_at(const std::string& id) {
  const std::size_t slash = id.find('/');
  if (slash == std::string::npos) return pid(sys_.registry().lookup(id));
  const std::string_view address = std::string_view(id).substr(0, slash);
  if (address != sys_.address()) {
    if (remote_ == nullptr) return {};
    const auto peers = remote_->peers();
    if (std::none_of(peers.begin(), peers.end(), [&](const remote::peer_info& p) { return p.address == address; }))
      return {};
  }
  return sys_.resolve(id);
}

void admin_api::stop(const admin_request& r, const std::string& id) {
  pid to = actor_at(id);
  const bool remote = to && to.get()->address() != sys_.address();
  if (!remote && dynamic_cast<context*>(to.get()) == nullptr)
    return unknown_actor(r, id);
  // Children stop first; the answer waits a little for the whole subtree.
  sys_.root().stop_future(to, 5s).get()->on_complete([r, id](future_result res) {
    if (res.status == future_status::completed) return r.reply(200, {{"id", id}, {"stopped", true}});
    r.reply(202, {{"id", id}, {"stopped", false}, {"stopping", true}});
  });
}

void admin_api::send(const admin_request& r, const std::string& id, bool wait_reply) {
  if (ctx_.stopping()) return r.error(503, "stopping", "the node is stopping and admits no new work");
  json body;
  if (!r.object(body)) return;
  for (const auto& [key, v] : body.items())
    if (key != "type" && key != "message" && !(wait_reply && key == "timeout_ms"))
      return r.error(400, "bad_request",
                     "unknown field '" + key + "' (expected type, message" +
                         (wait_reply ? ", timeout_ms)" : ")"));
  if (!body.contains("type") || !body["type"].is_string())
    return r.error(400, "bad_request", "'type' (a fully qualified message type) is required");
  const json payload = body.contains("message") ? body["message"] : json::object();
  if (!payload.is_object())
    return r.error(400, "bad_request", "'message' must be a JSON object");
  long long timeout_ms = default_request_timeout_ms;
  if (body.contains("timeout_ms")) {
    if (!body["timeout_ms"].is_number_integer() || body["timeout_ms"].get<long long>() <= 0 ||
        body["timeout_ms"].get<long long>() > max_request_timeout_ms)
      return r.error(400, "bad_request",
                     "'timeout_ms' must be a whole number from 1 to " +
                         std::to_string(max_request_timeout_ms));
    timeout_ms = body["timeout_ms"];
  }

  pid to = actor_at(id);
  const bool remote = to && to.get()->address() != sys_.address();
  const auto* cell = dynamic_cast<const context*>(to.get());
  if (!remote && cell == nullptr) return unknown_actor(r, id);
  // Refused before the send rather than dropped after it: a 202 would say
  // it was queued, and a full back-pressure mailbox would hold this thread.
  // (Another node's actor: its node refuses or counts what does not fit.)
  if (sys_.queue_pressure() >= 100)
    return r.error(503, "over_budget",
                   "the node's queued messages are at their budget (node.max_queued_bytes); "
                   "try again later");
  if (cell != nullptr && cell->props().mailbox.kind != mailbox_kind::unbounded && cell->pressure() >= 100)
    return r.error(503, "mailbox_full",
                   "'" + id + "' has a full mailbox (" + std::to_string(cell->mailbox_depth()) +
                       " messages); try again later");

  if (plugins_ == nullptr) return r.error(400, "unknown_type", "this node loads no plugins: no message types");
  message m;
  std::string why;
  switch (plugins_->from_json(body["type"].get<std::string>(), payload.dump(), m, why)) {
    case plugin::codec_status::ok: break;
    case plugin::codec_status::unknown_type: return r.error(400, "unknown_type", why);
    case plugin::codec_status::mismatch: return r.error(400, "schema_mismatch", why);
  }
  if (!wait_reply) {
    sys_.root().send(to, std::move(m));
    return r.reply(202, {{"sent", true}, {"to", to.to_string()}});
  }
  sys_.root()
      .request_future(to, std::move(m), std::chrono::milliseconds(timeout_ms))
      .get()
      ->on_complete([plugins = plugins_, r, id, timeout_ms](future_result res) {
        answer_request(*plugins, r, id, timeout_ms, res);
      });
}

void answer_request(plugin::host& plugins, const admin_request& r, const std::string& id,
                    long long timeout_ms, const future_result& res) {
  switch (res.status) {
    case future_status::completed: break;
    case future_status::failed: {
      const auto* g = res.reply.as<troupe::cluster::GrainError>();
      const std::string detail = g && g->detail() ? g->detail()->str() : std::string("the request failed");
      using gs = troupe::cluster::GrainStatus;
      switch (g ? g->status() : gs::NotOwner) {
        case gs::NoHost: return r.error(404, "no_host", detail);
        case gs::ActivationFailed: return r.error(500, "activation_failed", detail);
        case gs::Busy: return r.error(503, "busy", detail);
        case gs::Timeout: return r.error(504, "timeout", detail);
        case gs::Ok:
        case gs::NotOwner:
        case gs::Fenced: break;
      }
      return r.error(503, "unavailable", detail);
    }
    case future_status::timed_out: {
      // A grain call says what it tried.
      if (const auto* g = res.reply.as<troupe::cluster::GrainError>(); g && g->detail())
        return r.error(504, "timeout", g->detail()->str());
      return r.error(504, "timeout", "no reply from '" + id + "' within " +
                                         std::to_string(timeout_ms) + " ms");
    }
    case future_status::dead_letter: {
      // The response says why; a node that could not be reached is not a
      // missing actor.
      const auto* d = res.reply.as<troupe::system::DeadLetterResponse>();
      const auto reason = d ? d->reason() : troupe::system::DeadLetterReason::Stopped;
      if (reason == troupe::system::DeadLetterReason::NodeLost ||
          reason == troupe::system::DeadLetterReason::Unconfirmed)
        return r.error(503, "unavailable",
                       "the request to '" + id + "' became a dead letter (" +
                           troupe::system::EnumNameDeadLetterReason(reason) + "): its node could not be reached");
      if (reason == troupe::system::DeadLetterReason::MailboxFull)
        return r.error(503, "mailbox_full", "'" + id + "' has a full mailbox; try again later");
      if (reason == troupe::system::DeadLetterReason::Unhandled)
        return r.error(422, "unhandled", "'" + id + "' does not handle this message (in its current behaviour)");
      if (reason == troupe::system::DeadLetterReason::OverBudget)
        return r.error(503, "over_budget",
                       "the node's queued messages are at their budget (node.max_queued_bytes); "
                       "try again later");
      // An actor that passed the request on (forward, or a message sent
      // with this request's sender) to one that is not there.
      if (d != nullptr && d->target() != nullptr && d->target()->id() != nullptr &&
          d->target()->id()->string_view() != id) {
        const std::string to = d->target()->id()->size() == 0
                                   ? std::string("an actor")
                                   : "'" + (d->target()->address() ? d->target()->address()->str() + "/" : std::string()) +
                                         d->target()->id()->str() + "'";
        return r.error(404, "unknown_actor",
                       "'" + id + "' passed the request on to " + to + ", which " +
                           (reason == troupe::system::DeadLetterReason::NotFound ? "does not exist"
                                                                                  : "stopped before it answered"));
      }
      return r.error(404, "unknown_actor", "'" + id + "' stopped before it answered");
    }
    case future_status::pending: return r.error(500, "internal", "the request did not complete");
  }
  std::string type, text, why;
  switch (plugins.to_json(*res.reply.get(), type, text, why)) {
    case plugin::codec_status::ok:
      return r.reply(200, {{"type", type}, {"message", json::parse(text)}});
    case plugin::codec_status::unknown_type: {
      char hex[19];
      std::snprintf(hex, sizeof hex, "0x%016llx",
                    static_cast<unsigned long long>(res.reply->type));
      return r.reply(200, {{"type", nullptr}, {"type_id", hex}, {"size", res.reply->size},
                           {"message", nullptr}});
    }
    case plugin::codec_status::mismatch: return r.error(502, "bad_reply", why);
  }
}

}  // namespace troupe::node
