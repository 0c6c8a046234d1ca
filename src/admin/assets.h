// The dashboard's files (src/admin/assets/), embedded in the binary at build time: CMake runs
// cmake/embed_assets.cmake, which writes them into a generated .cc as byte arrays, so the binary
// serves its page with no files beside it. Constant data; any thread.
#pragma once
#include <cstddef>
#include <string_view>

namespace fulcrum::admin {

struct Asset {
  std::string_view path;  // "/index.html", "/app.js"
  std::string_view content_type;
  std::string_view body;
};

// The asset at `path`, or null.
const Asset* find_asset(std::string_view path);

// Defined in the generated file.
extern const Asset kEmbeddedAssets[];
extern const size_t kEmbeddedAssetCount;

}  // namespace fulcrum::admin
