// Lookup over the embedded dashboard files (assets.h); the table itself is generated at build
// time. Any thread.
#include "admin/assets.h"

namespace fulcrum::admin {

const Asset* find_asset(std::string_view path) {
  for (size_t i = 0; i < kEmbeddedAssetCount; ++i)
    if (kEmbeddedAssets[i].path == path) return &kEmbeddedAssets[i];
  return nullptr;
}

}  // namespace fulcrum::admin
