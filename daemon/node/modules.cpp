// The list of modules, from daemon/modules/meson.build (module_list.h
// defines TROUPE_MODULES as X(name) for each, in start order).
#include "module_list.h"
#include "node/module.hpp"

#define X(name) troupe::node::module_def troupe_module_##name();
TROUPE_MODULES
#undef X

namespace troupe::node {

const std::vector<module_def>& modules() {
#define X(name) troupe_module_##name(),
  static const std::vector<module_def> all{TROUPE_MODULES};
#undef X
  return all;
}

const schema& node_schema() {
  static const schema s = [] {
    schema out;
    out.sections = {&node_section(), &seeds_section(), &dispatcher_section(), &log_section()};
    for (const module_def& m : modules()) {
      out.sections.insert(out.sections.end(), m.sections.begin(), m.sections.end());
      out.kind_keys.insert(out.kind_keys.end(), m.kind_keys.begin(), m.kind_keys.end());
    }
    return out;
  }();
  return s;
}

}  // namespace troupe::node
