// Loads and validates a YAML config file into a Config. Strict: unknown keys, wrong types, bad
// durations, sizes and addresses, unknown backend names and duplicate names are errors that
// point at FILE:LINE:COL. Start-up and reload only (may block, may allocate freely).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include "config/config.h"

namespace fulcrum::config {

using LoadResult = std::variant<std::shared_ptr<const Config>, ConfigError>;

// Loads `path`; relative paths inside it are taken from its folder.
LoadResult load_file(const std::string& path);
// Loads YAML text as if read from `path` (tests, `fulcrum demo`).
LoadResult load_text(std::string_view yaml, const std::string& path);

}  // namespace fulcrum::config
