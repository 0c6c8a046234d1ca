// Version and build information for `fulcrum version`.
#pragma once
#include <string>

namespace fulcrum::app {
std::string version_text();
}
