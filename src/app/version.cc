#include "app/version.h"

#include <openssl/opensslv.h>

namespace fulcrum::app {

std::string version_text() {
  std::string out = "fulcrum " FULCRUM_VERSION "\n";
  out += "built " __DATE__ " " __TIME__ " with ";
#if defined(__clang__)
  out += "clang " __clang_version__;
#elif defined(__GNUC__)
  out += "gcc " __VERSION__;
#endif
  out += ", C++" + std::to_string(__cplusplus / 100 % 100);
  out += "\n";
  out += "features: tcp\n";
  return out;
}

}  // namespace fulcrum::app
