// `fulcrum demo`: the embedded default a newcomer runs first. Starts three demo application
// servers of different speeds, each on a thread of its own with a load agent that reports the CPU
// that thread uses, writes the demo config, and runs the balancer in front of them. Main thread
// (each demo server has its own loop).
#pragma once
#include <string>

namespace fulcrum::app {

// The demo's config (YAML), as `fulcrum demo --print-config` prints it.
std::string demo_config();
int run_demo(bool print_config_only);

}  // namespace fulcrum::app
