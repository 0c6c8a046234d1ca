// libFuzzer target for the config loader: any bytes given as a YAML file must give a Config or a
// ConfigError, never a crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto result = fulcrum::config::load_text(text, "fuzz.yaml");
  (void)result;
  return 0;
}
