#include "app/cli.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <variant>

#include "app/demo.h"
#include "app/runtime.h"
#include "app/validate.h"
#include "app/version.h"
#include "config/loader.h"
#include "core/log.h"

namespace fulcrum::app {
namespace {

constexpr const char* kUsage =
    "usage: fulcrum <command> [options]\n"
    "  run   [-c FILE]   run with a config file (default fulcrum.yaml)\n"
    "  check [-c FILE]   validate a config: FILE:LINE:COL: message on error\n"
    "  demo [--print-config]  three demo app servers behind the balancer on 127.0.0.1:8080\n"
    "  version           version and build information\n"
    "options: -c, --config FILE   -v, --verbose (debug logging)\n";

struct Options {
  std::string command;
  std::string config = "fulcrum.yaml";
  bool verbose = false;
  bool print_config = false;
};

bool parse_args(int argc, char** argv, Options* o) {
  if (argc < 2) return false;
  o->command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "-c" || a == "--config") && i + 1 < argc) o->config = argv[++i];
    else if (a.rfind("--config=", 0) == 0) o->config = a.substr(9);
    else if (a == "-v" || a == "--verbose") o->verbose = true;
    else if (a == "--print-config") o->print_config = true;
    else {
      std::fprintf(stderr, "fulcrum: unknown option '%s'\n", a.c_str());
      return false;
    }
  }
  return true;
}

// Loads and validates; prints FILE:LINE:COL: message and returns null on error.
std::shared_ptr<const config::Config> load(const std::string& path) {
  auto loaded = config::load_file(path);
  if (auto* err = std::get_if<config::ConfigError>(&loaded)) {
    std::fprintf(stderr, "%s\n", err->to_string().c_str());
    return nullptr;
  }
  auto cfg = std::get<std::shared_ptr<const config::Config>>(loaded);
  if (auto err = validate(*cfg)) {
    std::fprintf(stderr, "%s\n", err->to_string().c_str());
    return nullptr;
  }
  return cfg;
}

int cmd_check(const Options& o) {
  auto cfg = load(o.config);
  if (!cfg) return 1;
  size_t servers = 0;
  for (auto& b : cfg->backends) servers += b.servers.size();
  std::printf("%s: ok: %zu listeners, %zu backends, %zu servers\n", o.config.c_str(), cfg->listeners.size(),
              cfg->backends.size(), servers);
  return 0;
}

int cmd_run(const Options& o) {
  auto cfg = load(o.config);
  if (!cfg) return 1;
  if (auto err = check_runnable(*cfg)) {
    std::fprintf(stderr, "%s\n", err->to_string().c_str());
    return 1;
  }
  auto rt = Runtime::create(cfg);
  if (!rt) {
    std::fprintf(stderr, "fulcrum: %s\n", rt.error().message.c_str());
    return 1;
  }
  return (*rt)->run();
}

}  // namespace

int main_cli(int argc, char** argv) {
  Options o;
  if (!parse_args(argc, argv, &o)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (o.verbose) set_log_level(LogLevel::kDebug);
  if (o.command == "version" || o.command == "--version") {
    std::fputs(version_text().c_str(), stdout);
    return 0;
  }
  if (o.command == "check") return cmd_check(o);
  if (o.command == "demo") return run_demo(o.print_config);
  if (o.command == "run") return cmd_run(o);
  if (o.command == "help" || o.command == "--help" || o.command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "fulcrum: unknown command '%s'\n%s", o.command.c_str(), kUsage);
  return 2;
}

}  // namespace fulcrum::app
