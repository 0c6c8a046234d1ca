// Responses fulcrum makes itself (SPEC: HTTP behaviour): 400, 403, 404, 413, 429, 431, 502, 503,
// 504 and friends, with short plain-text bodies. Constant text; any thread.
#pragma once
#include <string_view>

#include "core/buffer.h"

namespace fulcrum::http {

std::string_view reason_phrase(int status);

// Appends a complete response to `out`. `close` adds "Connection: close". `extra` is zero or
// more complete header lines ("Retry-After: 1\r\n"). HEAD responses carry no body.
bool write_local_response(Buffer& out, int status, bool close, bool head_request = false,
                          std::string_view extra = {});

}  // namespace fulcrum::http
