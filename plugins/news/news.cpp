// news: a reader follows topics of the cluster and keeps the headlines
// published to them; it can post one too, and tells who did not get it.
// The pub-sub example (docs/pubsub.md): run it on several nodes of one
// cluster, and every reader of a topic gets what any of them posts.
#include <deque>
#include <string>
#include <vector>

#include <troupe/troupe.hpp>
#include "news_generated.h"            // flatc --cpp --gen-name-strings news.fbs

struct Reader : troupe::Actor {
  std::deque<std::string> last;

  void receive(troupe::Context& ctx) override {
    if (const auto* h = ctx.message<news::Headline>()) {
      last.push_back(h->text() ? h->text()->str() : std::string());
      if (last.size() > 100) last.pop_front();
    } else if (const auto* f = ctx.message<news::Follow>()) {
      ctx.subscribe(f->topic()->string_view(), following);
    } else if (const auto* u = ctx.message<news::Unfollow>()) {
      ctx.unsubscribe(u->topic()->string_view(), following);
    } else if (ctx.message<news::Read>()) {
      ctx.respond<news::Headlines>([&](auto& b) {
        std::vector<flatbuffers::Offset<flatbuffers::String>> texts;
        for (const std::string& t : last) texts.push_back(b.CreateString(t));
        return news::CreateHeadlines(b, b.CreateVector(texts));
      });
    } else if (const auto* p = ctx.message<news::Post>()) {
      const std::string text = p->text() ? p->text()->str() : std::string();
      ctx.publish_reported<news::Headline>(
          p->topic()->string_view(), [&](auto& b) { return news::CreateHeadlineDirect(b, text.c_str()); },
          [](troupe::Context& c, const troupe::Report& r) {
            c.respond<news::Posted>([&](auto& b) {
              std::vector<flatbuffers::Offset<flatbuffers::String>> missed;
              for (const auto& f : r.failures) missed.push_back(b.CreateString(f.subscriber));
              return news::CreatePosted(b, r.ok(), r.delivered, b.CreateVector(missed));
            });
          });
    }
  }

  // Answers Follow and Unfollow once the topic has the change.
  static void following(troupe::Context& ctx, const troupe::Subscribed& s) {
    ctx.respond<news::Following>([&](auto& b) { return news::CreateFollowing(b, s.ok(), s.subscribers); });
  }
};

TROUPE_PLUGIN(news, "1.0.0") {
  plugin.kind<Reader>("news.reader");
  plugin.schema(news_bfbs);
}
