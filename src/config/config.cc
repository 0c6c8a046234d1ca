// Helpers of the plain Config value (loader.cc builds it).
#include "config/config.h"

namespace fulcrum::config {

std::string ConfigError::to_string() const {
  return file + ":" + std::to_string(mark.line) + ":" + std::to_string(mark.col) + ": " + message;
}

const Backend* Config::find_backend(std::string_view name) const {
  for (auto& b : backends)
    if (b.name == name) return &b;
  return nullptr;
}

}  // namespace fulcrum::config
