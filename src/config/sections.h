// The config's sections that need nothing from the rest of the file: the top-level settings and
// the backends (sections.cc). The loader's walk (loader.cc) calls these for each one it meets and
// keeps what ties sections together: backend names used by listeners, clashing binds. Internal
// to src/config; start-up and reload only. Errors are thrown as yaml::Failure.
#pragma once
#include <cstdint>
#include <string>

#include "config/config.h"
#include "config/yaml_read.h"

namespace fulcrum::config::sections {

// `workers: auto | 1-256`; 0 for auto.
uint32_t workers(const yaml::Field& f);
// Relative paths in these are taken from `dir`, the config file's folder.
Admin admin(const yaml::Field& f, const std::string& dir);
AccessLog access_log(const yaml::Field& f, const std::string& dir);
// One item of `backends`, with its servers, health check and hash key checked against each other.
// `name_mark` gets the mark of its name, for the walk's duplicate-name error.
Backend backend(const yaml::Field& f, const std::string& dir, Mark* name_mark);

}  // namespace fulcrum::config::sections
