// A plugin built for another ABI major: refused before its init runs.
#include <troupe/abi.h>

namespace {
int init(const troupe_host_api*, troupe_registrar*) { return 0; }
}  // namespace

extern "C" TROUPE_EXPORT const troupe_plugin_desc* troupe_plugin_entry(void) {
  static const troupe_plugin_desc desc = {sizeof(troupe_plugin_desc), TROUPE_ABI_MAJOR + 1, 0,
                                          "bad_abi", "1.0.0", &init};
  return &desc;
}
