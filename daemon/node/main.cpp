// troupe-node: the daemon's command line. The node itself is node.hpp;
// what it runs is the list of modules in daemon/modules/.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include <sys/resource.h>

#include "node/crash.hpp"
#include "node/log.hpp"
#include "node/module.hpp"
#include "node/node.hpp"

namespace {

constexpr int ex_usage = 64;

constexpr const char* usage_text =
    "Usage: troupe-node --config FILE\n"
    "  or:  troupe-node --check-config FILE\n"
    "  or:  troupe-node --config-reference | --version | --help\n";

void usage() { std::fputs(usage_text, stderr); }

void help() {
  std::printf(
      "troupe-node runs actors from plugins on one node of a Troupe cluster.\n\n%s\n"
      "Options:\n"
      "  --config FILE        run with the configuration in FILE (YAML), in the foreground;\n"
      "                       under systemd it reports READY=1 once its plugins are loaded\n"
      "  --check-config FILE  only validate FILE: exit 0, or 78 with every problem as\n"
      "                       FILE:LINE: message\n"
      "  --config-reference   print every configuration key, its default and whether a\n"
      "                       reload applies it (Markdown)\n"
      "  --version            print the version\n"
      "  --help               print this help\n\n"
      "Signals: SIGHUP re-reads the configuration: the keys --config-reference marks\n"
      "'applies' take effect at once, the others at the next start (the log names them);\n"
      "SIGTERM or SIGINT stops every actor and exits 0; a second one exits at once.\n\n"
      "Files: /etc/troupe/node.yaml (the packaged configuration), /usr/lib/troupe/plugins\n"
      "and /usr/local/lib/troupe/plugins (plugins), /var/lib/troupe (state).\n",
      usage_text);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("troupe-node %s\n", TROUPE_VERSION);
      return 0;
    }
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      help();
      return 0;
    }
    if (std::strcmp(argv[i], "--config-reference") == 0) {
      std::fputs(troupe::node::config_reference(troupe::node::node_schema()).c_str(), stdout);
      return 0;
    }
    const bool config_option = std::strcmp(argv[i], "--config") == 0 || std::strcmp(argv[i], "--check-config") == 0;
    if (config_option && i + 1 < argc) {
      check_only = std::strcmp(argv[i], "--check-config") == 0;
      config_path = argv[++i];
    } else {
      if (config_option)
        std::fprintf(stderr, "troupe-node: %s needs a FILE\n", argv[i]);
      else
        std::fprintf(stderr, "troupe-node: unknown option '%s'\n", argv[i]);
      usage();
      return ex_usage;
    }
  }
  if (config_path.empty()) {
    std::fputs("troupe-node: no configuration given\n", stderr);
    usage();
    return ex_usage;
  }
  // Until the configuration is read: the defaults, so that its errors
  // reach the journal as errors.
  troupe::node::configure_log(troupe::node::config{});
  troupe::node::config cfg;
  if (!troupe::node::read_config(config_path, cfg)) return troupe::node::ex_config;
  if (check_only) {
    // What a start would refuse beyond the file itself.
    bool ok = true;
    for (const troupe::node::module_def& m : troupe::node::modules())
      if (m.preflight)
        for (const std::string& problem : m.preflight(cfg)) {
          std::fprintf(stderr, "%s: %s\n", config_path.c_str(), problem.c_str());
          ok = false;
        }
    if (!ok) return troupe::node::ex_config;
    std::printf("%s: configuration is valid\n", config_path.c_str());
    return 0;
  }
  troupe::node::configure_log(cfg);
  troupe::node::install_crash_report();
  // A client or peer that hangs up must not end the node.
  std::signal(SIGPIPE, SIG_IGN);
  // Connections are bounded by the config, not by a soft limit of 1,024
  // descriptors: take what the hard limit allows.
  if (rlimit files{}; ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  troupe::node::node_core n(std::move(cfg));
  return n.run();
}
