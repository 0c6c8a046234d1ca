// Checks that need more than the YAML schema: words other modules own (balance algorithms from
// the lb registry), pairings an algorithm cannot serve (a cookie hash on a tcp listener), and what
// this build can run. Start-up and reload only.
#pragma once
#include <optional>

#include "config/config.h"

namespace fulcrum::app {

// Errors a valid config must not have (fulcrum check and run).
std::optional<config::ConfigError> validate(const config::Config& cfg);
// Errors for parts of a valid config that this build cannot run yet (fulcrum run only).
std::optional<config::ConfigError> check_runnable(const config::Config& cfg);

}  // namespace fulcrum::app
