// The actor that runs a plugin kind.
#include "plugin/plugin_internal.hpp"

namespace troupe::plugin::detail {

plugin_actor::~plugin_actor() {
  for (auto& [id, t] : timers_) t.cancel();
  unsubscribe_cluster();
  if (instance_ != nullptr && k_->def.destroy(instance_) != 0) {
    h_->stats().actor_failures.fetch_add(1, std::memory_order_relaxed);
    h_->log(log_level::error, k_->name + ": an actor's destructor failed");
  }
}

void plugin_actor::receive(context& ctx) {
  envelope& e = ctx.envelope();
  std::string why;
  if ((e.flags & envelope::trusted) == 0 && !k_->h->verify(e, why)) {
    // Rejected before the plugin sees it: counted, logged, dead-lettered.
    k_->h->stats().invalid_messages.fetch_add(1, std::memory_order_relaxed);
    k_->h->log(log_level::warning, k_->name + " " + ctx.self().to_string() +
                                    ": message rejected: " + why);
    envelope* copy = share_envelope(&e);
    if (e.sender != nullptr) {
      e.sender->retain();
      copy->sender = e.sender;
    }
    ctx.system().dead_letter(copy, &ctx, dead_letter_reason::invalid);
    return;
  }
  troupe_ctx frame{&ctx, k_.get(), k_->plugin, this, {}, false};
  if (instance_ == nullptr) {
    instance_ = k_->def.create(k_->def.data, &frame);
    if (instance_ == nullptr) failed(frame, "create returned no instance");
  }
  const troupe_message m{e.type, e.data, e.size};
  if (k_->def.receive(instance_, &frame, &m) != 0) failed(frame, "receive failed");
}

void plugin_actor::run_reply(context& ctx, void (*on_reply)(void*, troupe_ctx*, const troupe_message*, int),
                             void* closure, const troupe_message& reply, int status) {
  troupe_ctx frame{&ctx, k_.get(), k_->plugin, this, {}, false};
  on_reply(closure, &frame, &reply, status);
  if (frame.failed) failed(frame, "on_reply failed");
}

}  // namespace troupe::plugin::detail
