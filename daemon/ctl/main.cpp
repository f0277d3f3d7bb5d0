// troupectl: the command-line client of a node's admin API.
//
//   troupectl [--admin URL] [--token-file F] [--json] COMMAND
//
// The token comes from --token-file, else $TROUPE_TOKEN_FILE, else the
// file the package makes at install (/etc/troupe/admin.token, readable by
// the group troupe-admin) when it is there.
//     status | members [down NAME] | peers | plugins | kinds | actors [--kind K] [--limit N]
//     spawn KIND [--name N] [--node ADDR] | stop ID | send ID TYPE JSON
//     request ID TYPE JSON [--timeout MS]
//
// Tables for people by default, the API's JSON with --json. Any failure
// prints one line: exit 1 for an error answer, 2 when the node cannot be
// reached, 64 for a wrong command line.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <curl/curl.h>
#include <nlohmann/json.hpp>

namespace {

using nlohmann::json;

constexpr int exit_failure = 1;    // the node answered with an error
constexpr int exit_unreachable = 2;  // no answer at all
constexpr int exit_usage = 64;      // the command line is wrong (EX_USAGE)

struct failure {
  int status;
  std::string message;
};

constexpr const char* packaged_token_file = "/etc/troupe/admin.token";

struct client {
  std::string base;
  std::string token;
  std::string token_note;  // why no token was sent, said with a 401
  long timeout_ms = 10000;

  // One call; throws `failure` unless the answer is 2xx.
  json call(const std::string& method, const std::string& path, const json* body = nullptr) const {
    std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) throw failure{exit_unreachable, "cannot start an HTTP client"};
    std::string url = base;
    while (!url.empty() && url.back() == '/') url.pop_back();
    url += path;
    std::string answer, payload;
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Accept: application/json");
    if (!token.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (body != nullptr) {
      payload = body->dump();
      headers = curl_slist_append(headers, "Content-Type: application/json");
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION,
                     +[](char* p, std::size_t size, std::size_t n, void* out) -> std::size_t {
                       static_cast<std::string*>(out)->append(p, size * n);
                       return size * n;
                     });
    char why[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, why);
    const CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK)
      throw failure{exit_unreachable, "cannot reach the node at " + base + ": " +
                                          (why[0] != '\0' ? why : curl_easy_strerror(rc))};
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    json j = json::parse(answer, nullptr, false);
    if (status / 100 != 2) {
      if (!j.is_discarded() && j.contains("error") && j["error"].is_object())
        throw failure{exit_failure, std::to_string(status) + " " + j["error"].value("code", "") +
                                        ": " + j["error"].value("message", "") +
                                        (status == 401 && !token_note.empty() ? " (" + token_note + ")" : "")};
      throw failure{exit_failure, "the node answered " + std::to_string(status) + " to " + method +
                                      " " + path};
    }
    if (j.is_discarded())
      throw failure{exit_failure, "the node's answer to " + path + " is not JSON"};
    return j;
  }

  static std::string escape(const std::string& segment) {
    char* e = curl_escape(segment.c_str(), static_cast<int>(segment.size()));
    std::string out(e);
    curl_free(e);
    return out;
  }
};

std::string text(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

// Columns as wide as their widest cell.
void table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(head.size());
  for (std::size_t i = 0; i < head.size(); ++i) width[i] = head[i].size();
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], r[i].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      out += cells[i];
      if (i + 1 < cells.size()) out.append(width[i] - cells[i].size() + 2, ' ');
    }
    std::cout << out << "\n";
  };
  line(head);
  for (const auto& r : rows) line(r);
}

std::string join(const json& list) {
  std::string out;
  for (const auto& v : list) {
    if (!out.empty()) out += ",";
    out += text(v);
  }
  return out.empty() ? "-" : out;
}

json parse_message(const std::string& arg) {
  json j = json::parse(arg, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw failure{exit_failure, "the message must be a JSON object, like '{\"by\": 1}': " + arg};
  return j;
}

// The first line of `path`, trailing blanks cut; false (errno set) if it
// cannot be read.
bool read_token(const std::string& path, std::string& out) {
  std::ifstream in(path);
  if (!in) return false;
  std::getline(in, out);
  while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
  return true;
}

// A list endpoint with its optional filters.
// `limit` goes as given (0 too: the API says what it accepts); nullopt: not given.
std::string listing(const std::string& path, const std::string& kind, std::optional<unsigned> limit) {
  std::string query;
  if (!kind.empty()) query += "kind=" + client::escape(kind);
  if (limit) query += (query.empty() ? "" : "&") + std::string("limit=") + std::to_string(*limit);
  return query.empty() ? path : path + "?" + query;
}

// A reply as the API gives it: its JSON, after its type when `typed`.
void print_reply(const json& out, bool typed) {
  if (out["type"].is_null())
    std::printf("reply of undeclared type %s (%s bytes)\n", text(out["type_id"]).c_str(), text(out["size"]).c_str());
  else if (typed)
    std::printf("%s %s\n", text(out["type"]).c_str(), out["message"].dump().c_str());
  else
    std::printf("%s\n", out["message"].dump().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"troupectl: inspect and drive a troupe-node through its admin API"};
  app.require_subcommand(1);
  // --admin, --token-file and --json may come after the command too.
  app.fallthrough();
  client cl;
  bool as_json = false;
  std::string token_file;
  cl.base = std::getenv("TROUPE_ADMIN") != nullptr ? std::getenv("TROUPE_ADMIN")
                                                   : "http://127.0.0.1:7780";
  app.add_option("--admin", cl.base, "the node's admin URL (default $TROUPE_ADMIN or " + cl.base + ")");
  app.add_option("--token-file", token_file,
                 "a file whose first line is the admin bearer token (default $TROUPE_TOKEN_FILE, "
                 "else " + std::string(packaged_token_file) + " when it is there)");
  app.add_flag("--json", as_json, "print the API's JSON instead of tables");
  app.set_version_flag("--version", std::string("troupectl ") + TROUPE_VERSION);

  auto* status = app.add_subcommand("status", "the node: name, cluster, version, counts");
  auto* members = app.add_subcommand("members", "the members of the cluster, as this node sees them");
  auto* down = members->add_subcommand("down", "declare a member dead (a node that will not return)");
  std::string member;
  down->add_option("NAME", member, "the member's name")->required();
  auto* peers = app.add_subcommand("peers", "the nodes this node has connections with");
  auto* plugins = app.add_subcommand("plugins", "loaded plugins and their kinds");
  auto* kinds = app.add_subcommand("kinds", "actor kinds and message types");
  auto* actors = app.add_subcommand("actors", "live actors with kind and mailbox depth");
  std::string kind_filter;
  unsigned limit = 0;
  actors->add_option("--kind", kind_filter, "only actors of this kind");
  actors->add_option("--limit", limit, "at most this many (oldest first; default 1000)");
  auto* spawn = app.add_subcommand("spawn", "spawn an actor of a kind");
  std::string kind, name;
  spawn->add_option("KIND", kind, "the kind")->required();
  spawn->add_option("--name", name, "a name for the actor (default: an id like $42)");
  std::string on_node;
  spawn->add_option("--node", on_node, "spawn on the node at this address (it must allow the kind)");
  auto* stop = app.add_subcommand("stop", "stop an actor (and its children)");
  std::string id;
  stop->add_option("ID", id, "the actor's id")->required();
  std::string type, message;
  auto* send = app.add_subcommand("send", "send a message given as JSON");
  send->add_option("ID", id, "the actor's id")->required();
  send->add_option("TYPE", type, "the message type, like counter.Add")->required();
  send->add_option("JSON", message, "the message as a JSON object")->required();
  auto* request = app.add_subcommand("request", "send a message and print the reply");
  long timeout_ms = 5000;
  request->add_option("ID", id, "the actor's id")->required();
  request->add_option("TYPE", type, "the message type, like counter.Get")->required();
  request->add_option("JSON", message, "the message as a JSON object")->required();
  // A timeout in milliseconds: a word that is no number is named as such.
  const CLI::Validator milliseconds(
      [](std::string& v) -> std::string {
        errno = 0;
        char* end = nullptr;
        const long n = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || errno != 0) return "'" + v + "' is not a number of milliseconds";
        if (n < 1 || n > 60000) return v + " ms is out of range (1 to 60000)";
        return {};
      },
      "MS");
  request->add_option("--timeout", timeout_ms, "how long to wait for the reply, in ms (default 5000)")
      ->check(milliseconds);

  auto* call = app.add_subcommand("call", "call a grain (a virtual actor) and print its reply as JSON");
  std::string grain;
  call->add_option("GRAIN", grain, "the grain as KIND/IDENTITY, like counter/c42")->required();
  call->add_option("TYPE", type, "the message type, like counter.Get")->required();
  call->add_option("JSON", message, "the message as a JSON object")->required();
  call->add_option("--timeout", timeout_ms, "how long the call may take, retries included, in ms (default 5000)")
      ->check(milliseconds);
  auto* grains = app.add_subcommand("grains", "the grains active on this node");
  grains->add_option("--kind", kind_filter, "only grains of this kind");
  grains->add_option("--limit", limit, "at most this many (default 1000)");

  auto* publish = app.add_subcommand("publish", "publish a message to a topic of the cluster");
  std::string topic;
  bool report = false;
  publish->add_option("TOPIC", topic, "the topic, like news")->required();
  publish->add_option("TYPE", type, "the message type, like news.Headline")->required();
  publish->add_option("JSON", message, "the message as a JSON object")->required();
  publish->add_flag("--report", report, "wait for the delivery report, and print who did not get it");
  auto* subscribers = app.add_subcommand("subscribers", "the subscribers of a topic");
  subscribers->add_option("TOPIC", topic, "the topic")->required();

  auto* journal = app.add_subcommand("journal", "a persistent actor's events, as JSON");
  std::string persistence_id;
  unsigned long long after = 0;
  journal->add_option("ID", persistence_id, "the persistence id: KIND/IDENTITY for a grain, KIND/NAME for a named actor")
      ->required();
  journal->add_option("--after", after, "only the events after this number (default 0: from the first)");
  journal->add_option("--limit", limit, "at most this many (default 100, at most 4096)");

  // A first word that is no command is named as such (CLI11 would only say
  // that a command is required).
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--admin" || a == "--token-file") {
      ++i;  // its value
      continue;
    }
    if (a.empty() || a[0] == '-') continue;
    bool known = false;
    std::string names;
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
      known = known || sub->get_name() == a;
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "troupectl: no command '%s'; the commands are %s (see troupectl --help)\n", argv[i],
                   names.c_str());
      return exit_usage;
    }
    break;
  }

  // --limit as given, 0 too (the API refuses what it does not take).
  const auto given_limit = [&](const CLI::App* sub) {
    return sub->count("--limit") > 0 ? std::optional<unsigned>(limit) : std::nullopt;
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // One line, like every other failure, and the status usage errors get.
    std::fprintf(stderr, "troupectl: %s (see troupectl --help)\n", e.what());
    return exit_usage;
  }

  try {
    const char* env_token_file = std::getenv("TROUPE_TOKEN_FILE");
    if (token_file.empty() && env_token_file != nullptr && *env_token_file != '\0')
      token_file = env_token_file;
    if (!token_file.empty()) {
      if (!read_token(token_file, cl.token))
        throw failure{exit_failure, "cannot read the token file " + token_file + ": " +
                                        std::strerror(errno)};
    } else if (::access(packaged_token_file, F_OK) == 0 && !read_token(packaged_token_file, cl.token)) {
      // Not an error yet: the node may want no token. If it does, say why.
      cl.token_note = std::string("cannot read ") + packaged_token_file + ": " + std::strerror(errno) +
                      "; members of the group troupe-admin can";
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    json out;
    if (status->parsed()) {
      out = cl.call("GET", "/v1/node");
      if (!as_json) {
        for (const char* key : {"name", "cluster", "version", "state", "actors", "plugins", "kinds",
                                "dispatcher_threads", "messages_processed", "dead_letters", "listen",
                                "admin", "metrics", "state_dir", "generation", "started_at", "pid", "config"})
          if (out.contains(key)) std::printf("%-19s %s\n", (std::string(key) + ":").c_str(),
                                             text(out[key]).c_str());
      }
    } else if (down->parsed()) {
      out = cl.call("POST", "/v1/members/" + client::escape(member) + "/down");
      if (!as_json) std::printf("%s is dead to the cluster now\n", member.c_str());
    } else if (members->parsed()) {
      out = cl.call("GET", "/v1/members");
      if (!as_json) {
        std::vector<std::vector<std::string>> rows;
        for (const auto& m : out["members"]) {
          std::string kinds;
          if (m.contains("meta") && m["meta"].contains("kinds")) kinds = text(m["meta"]["kinds"]);
          rows.push_back({text(m["name"]), text(m["address"]), text(m["status"]),
                          m.contains("generation") ? text(m["generation"]) : "",
                          m.contains("incarnation") ? text(m["incarnation"]) : "",
                          m.contains("since") ? text(m["since"]) : "", kinds,
                          m.value("self", false) ? "yes" : ""});
        }
        table({"NAME", "ADDRESS", "STATUS", "GENERATION", "INCARNATION", "SINCE", "KINDS", "SELF"}, rows);
      }
    } else if (peers->parsed()) {
      out = cl.call("GET", "/v1/peers");
      if (!as_json) {
        std::vector<std::vector<std::string>> rows;
        for (const auto& p : out["peers"])
          rows.push_back({text(p["address"]), text(p["node"]),
                          text(p["state"]), text(p["direction"]), text(p["messages_sent"]),
                          text(p["messages_received"]), text(p["queued"]),
                          text(p["last_error"])});
        table({"ADDRESS", "NODE", "STATE", "DIRECTION", "SENT", "RECEIVED", "QUEUED", "LAST ERROR"},
              rows);
      }
    } else if (plugins->parsed()) {
      out = cl.call("GET", "/v1/plugins");
      if (!as_json) {
        std::vector<std::vector<std::string>> rows;
        for (const auto& p : out["plugins"])
          rows.push_back({text(p["name"]), text(p["version"]), text(p["abi"]), join(p["kinds"]),
                          text(p["file"])});
        table({"NAME", "VERSION", "ABI", "KINDS", "FILE"}, rows);
      }
    } else if (kinds->parsed()) {
      out = cl.call("GET", "/v1/kinds");
      if (!as_json) {
        std::vector<std::vector<std::string>> rows;
        for (const auto& k : out["kinds"]) rows.push_back({text(k["name"]), text(k["plugin"])});
        table({"KIND", "PLUGIN"}, rows);
        std::cout << "\n";
        rows.clear();
        for (const auto& t : out["message_types"]) rows.push_back({text(t["name"]), text(t["plugin"])});
        table({"MESSAGE TYPE", "PLUGIN"}, rows);
      }
    } else if (actors->parsed()) {
      out = cl.call("GET", listing("/v1/actors", kind_filter, given_limit(actors)));
      if (!as_json) {
        std::vector<std::vector<std::string>> rows;
        for (const auto& a : out["actors"])
          rows.push_back({text(a["id"]), text(a["kind"]).empty() ? "-" : text(a["kind"]),
                          text(a["mailbox"]), text(a["parent"])});
        table({"ID", "KIND", "MAILBOX", "PARENT"}, rows);
        if (out.value("truncated", false))
          std::printf("(%zu of %s actors shown)\n", out["actors"].size(), text(out["total"]).c_str());
      }
    } else if (spawn->parsed()) {
      json body{{"kind", kind}};
      if (!name.empty()) body["name"] = name;
      if (!on_node.empty()) body["node"] = on_node;
      out = cl.call("POST", "/v1/actors", &body);
      if (!as_json) std::printf("%s\n", text(on_node.empty() ? out["id"] : out["pid"]).c_str());
    } else if (stop->parsed()) {
      out = cl.call("DELETE", "/v1/actors/" + client::escape(id));
      if (!as_json)
        std::printf("%s %s\n", id.c_str(), out.value("stopped", false) ? "stopped" : "stopping");
    } else if (send->parsed()) {
      json body{{"type", type}, {"message", parse_message(message)}};
      out = cl.call("POST", "/v1/actors/" + client::escape(id) + "/send", &body);
      if (!as_json) std::printf("sent %s to %s\n", type.c_str(), text(out["to"]).c_str());
    } else if (request->parsed()) {
      json body{{"type", type}, {"message", parse_message(message)}, {"timeout_ms", timeout_ms}};
      cl.timeout_ms = timeout_ms + 5000;
      out = cl.call("POST", "/v1/actors/" + client::escape(id) + "/request", &body);
      if (!as_json) print_reply(out, true);
    } else if (call->parsed()) {
      const std::size_t slash = grain.find('/');
      if (slash == std::string::npos || slash == 0 || slash + 1 == grain.size())
        throw failure{exit_usage, "the grain is KIND/IDENTITY, like counter/c42, not '" + grain + "'"};
      const json body = parse_message(message);
      cl.timeout_ms = timeout_ms + 5000;
      out = cl.call("POST", "/v1/grains/" + client::escape(grain.substr(0, slash)) + "/" +
                                client::escape(grain.substr(slash + 1)) + "/" + client::escape(type) +
                                "?timeout_ms=" + std::to_string(timeout_ms),
                    &body);
      if (!as_json) print_reply(out, false);
    } else if (publish->parsed()) {
      const json body = parse_message(message);
      out = cl.call("POST", "/v1/topics/" + client::escape(topic) + "/" + client::escape(type) +
                                (report ? "?report=true" : ""),
                    &body);
      if (!as_json && report) {
        const std::string n = text(out["delivered"]);
        std::printf("delivered to %s %s\n", n.c_str(), n == "1" ? "subscriber" : "subscribers");
        for (const auto& f : out["failures"])
          std::printf("not delivered to %s: %s\n", text(f.contains("grain") ? f["grain"] : f["actor"]).c_str(),
                      text(f["reason"]).c_str());
      } else if (!as_json) {
        std::printf("published to %s\n", topic.c_str());
      }
    } else if (subscribers->parsed()) {
      out = cl.call("GET", "/v1/topics/" + client::escape(topic) + "/subscribers");
      if (!as_json) {
        std::vector<std::vector<std::string>> rows;
        for (const auto& s : out["subscribers"])
          rows.push_back(s.contains("grain") ? std::vector<std::string>{text(s["grain"]), "grain"}
                                             : std::vector<std::string>{text(s["actor"]), "actor"});
        table({"SUBSCRIBER", "WHAT"}, rows);
      }
    } else if (journal->parsed()) {
      std::string path = "/v1/journal/" + client::escape(persistence_id) + "?after=" + std::to_string(after);
      if (journal->count("--limit") > 0) path += "&limit=" + std::to_string(limit);
      out = cl.call("GET", path);
      if (!as_json) {
        for (const auto& e : out["events"]) {
          if (e["type"].is_null())
            std::printf("%s %s (undeclared type, %s bytes)\n", text(e["seq"]).c_str(), text(e["type_id"]).c_str(),
                        text(e["size"]).c_str());
          else
            std::printf("%s %s %s\n", text(e["seq"]).c_str(), text(e["type"]).c_str(), e["event"].dump().c_str());
        }
        if (out.value("more", false))
          std::printf("(more after %s: --after %s)\n", text(out["events"].back()["seq"]).c_str(),
                      text(out["events"].back()["seq"]).c_str());
      }
    } else if (grains->parsed()) {
      out = cl.call("GET", listing("/v1/grains", kind_filter, given_limit(grains)));
      if (!as_json) {
        std::vector<std::vector<std::string>> rows;
        for (const auto& g : out["grains"]) {
          char idle[32];
          std::snprintf(idle, sizeof idle, "%.1f s", g.value("idle_seconds", 0.0));
          rows.push_back({text(g["kind"]), text(g["identity"]), text(g["id"]), idle});
        }
        table({"KIND", "IDENTITY", "ACTOR", "IDLE"}, rows);
        if (out.value("truncated", false))
          std::printf("(%zu of %s grains shown)\n", out["grains"].size(), text(out["total"]).c_str());
      }
    }
    if (as_json) std::cout << out.dump() << "\n";
  } catch (const failure& f) {
    std::fprintf(stderr, "troupectl: %s\n", f.message.c_str());
    return f.status;
  }
  return 0;
}
