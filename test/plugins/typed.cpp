// typed: a service from typed_messages.fbs (rpc_service Ledger), its server
// written as methods and called through the client that
// troupe-embed-schema --services generates.
#include <cstdio>
#include <map>
#include <string>

#include "typed_services.h"

namespace {

using namespace typed;

struct Ledger : LedgerService<> {
  struct entry {
    std::int64_t amount = 0;
    int puts = 0;
  };
  std::map<std::string, entry> book;
  Point at{0, 0};
  int tags = 0;
  std::string labels;
  bool urgent = false;
  // Slow calls waiting for their timer: the caller, by key.
  std::multimap<std::string, troupe::Responder<Total>> waiting;

  void answer(troupe::Context& ctx, const std::string& key, const troupe::Responder<Total>& respond) {
    const entry& e = book[key];
    respond(ctx, [&](auto& b) {
      return CreateTotalDirect(b, key.c_str(), e.amount, e.puts, &at, tags, labels.c_str(), urgent);
    });
  }

  void Put(troupe::Context& ctx, const typed::Put& p, troupe::Responder<Total> respond) override {
    const std::string key = p.key() ? p.key()->str() : "";
    entry& e = book[key];
    e.amount = p.mode() == Mode::Set ? p.amount() : e.amount + p.amount();
    ++e.puts;
    if (p.at()) at = *p.at();
    tags = p.tags() ? static_cast<int>(p.tags()->size()) : 0;
    labels.clear();
    if (p.labels())
      for (const auto* l : *p.labels()) labels.append(labels.empty() ? "" : ",").append(l->str());
    urgent = p.urgent();
    answer(ctx, key, respond);
  }
  void Read(troupe::Context& ctx, const typed::Read& r, troupe::Responder<Total> respond) override {
    answer(ctx, r.key() ? r.key()->str() : "", respond);
  }
  void Deep(troupe::Context& ctx, const typed::Deep& d, troupe::Responder<Total> respond) override {
    answer(ctx, d.inner() && d.inner()->key() ? d.inner()->key()->str() : "", respond);
  }
  void Drop(troupe::Context&, const typed::Drop& d) override { book.erase(d.key() ? d.key()->str() : ""); }
  // Answered from a later turn: the timer's.
  void Slow(troupe::Context& ctx, const typed::Slow& s, troupe::Responder<Total> respond) override {
    const std::string key = s.key() ? s.key()->str() : "";
    waiting.emplace(key, std::move(respond));
    ctx.send_after<Due>(std::chrono::milliseconds(s.after_ms()), ctx.self(),
                        [&](auto& b) { return CreateDueDirect(b, key.c_str()); });
  }
  // The timer: it answers the slow calls waiting for its key. Anything
  // else stays unhandled.
  void other(troupe::Context& ctx) override {
    const auto* d = ctx.message<Due>();
    if (d == nullptr) return;
    const std::string key = d->key() ? d->key()->str() : "";
    auto [first, last] = waiting.equal_range(key);
    for (auto it = first; it != last; ++it) answer(ctx, key, it->second);
    waiting.erase(first, last);
  }
};

struct Caller : troupe::Actor {
  static std::string str(const flatbuffers::String* s) { return s != nullptr ? s->str() : std::string(); }

  static void got(troupe::Context& ctx, const troupe::TypedReply<Total>& t) {
    std::string summary;
    if (t.ok()) {
      char buf[256];
      std::snprintf(buf, sizeof buf, "at=%d,%d tags=%d labels=%s urgent=%d", t->at() ? t->at()->x() : -1,
                    t->at() ? t->at()->y() : -1, t->tags(), t->labels() ? t->labels()->c_str() : "", t->urgent());
      summary = buf;
    }
    const std::string error = t.error();
    ctx.respond<Answer>([&](auto& b) {
      return CreateAnswerDirect(b, t.ok(), error.c_str(), t.ok() ? t->amount() : 0, t.ok() ? t->puts() : 0,
                                summary.c_str());
    });
  }

  void receive(troupe::Context& ctx) override {
    const auto* a = ctx.message<Ask>();
    if (a == nullptr) return;
    const std::string key = str(a->key()), call = str(a->call());
    LedgerClient client = !str(a->actor()).empty() ? LedgerClient(ctx, ctx.lookup(str(a->actor())))
                          : !str(a->kind()).empty() ? LedgerClient(ctx, str(a->kind()), str(a->identity()))
                                                    : LedgerClient(ctx, str(a->identity()));
    const auto timeout = std::chrono::milliseconds(2000);
    if (call == "put") {
      const Point at(3, 4);
      const std::int32_t tags[] = {7, 8, 9};
      const std::vector<std::string> labels{"red", "green"};
      client.Put(key, a->amount(), Mode::Add, &at, tags, labels, true, &got, timeout);
    } else if (call == "read") {
      client.Read(key, &got, timeout);
    } else if (call == "deep") {  // the builder form
      client.Deep([&](auto& b) { return CreateDeep(b, CreateReadDirect(b, key.c_str())); }, &got, timeout);
    } else if (call == "slow") {
      client.Slow(key, static_cast<std::int32_t>(a->amount()), &got, timeout);
    } else if (call == "drop") {
      client.Drop(key);
      ctx.respond<Answer>([](auto& b) { return CreateAnswerDirect(b, true, ""); });
    }
  }
};

}  // namespace

TROUPE_PLUGIN(typed, "1.0.0") {
  plugin.schema(typed_bfbs);
  plugin.grain<Ledger>(LedgerService<>::kind);
  plugin.kind<Caller>("typed.caller");
}
