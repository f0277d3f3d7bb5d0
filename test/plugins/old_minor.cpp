// A plugin built against ABI 1.0, written in plain C against abi.h: it
// declares minor 0 and calls only what 1.0 had. A newer node must run it.
#include <stdlib.h>

#include <troupe/abi.h>

namespace {

const troupe_host_api* host = nullptr;

void* create(void*, troupe_ctx*) { return malloc(1); }
int destroy(void* instance) {
  free(instance);
  return 0;
}

// Answers every request with the same bytes.
int receive(void*, troupe_ctx* ctx, const troupe_message* msg) {
  if (host->sender(ctx) == nullptr) return 0;
  return host->respond(ctx, msg->type, msg->data, msg->size, 0) == TROUPE_OK ? 0 : 1;
}

int init(const troupe_host_api* h, troupe_registrar* reg) {
  host = h;
  troupe_kind_def def = {};
  def.size = sizeof def;
  def.name = "old.echo";
  def.create = &create;
  def.receive = &receive;
  def.destroy = &destroy;
  return h->register_kind(reg, &def) == TROUPE_OK ? 0 : 1;
}

}  // namespace

extern "C" TROUPE_EXPORT const troupe_plugin_desc* troupe_plugin_entry(void) {
  static const troupe_plugin_desc desc = {sizeof(troupe_plugin_desc), 1, 0, "old_minor", "0.9.0",
                                          &init};
  return &desc;
}
