#include "http/local_response.h"

#include <cstdio>

namespace fulcrum::http {

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
  }
  return "Unknown";
}

namespace {
std::string_view body_text(int status) {
  switch (status) {
    case 400: return "400 bad request\n";
    case 403: return "403 forbidden\n";
    case 404: return "404 no route for this request\n";
    case 408: return "408 request timeout\n";
    case 413: return "413 request body too large\n";
    case 417: return "417 expectation failed\n";
    case 429: return "429 too many requests\n";
    case 431: return "431 request header fields too large\n";
    case 501: return "501 not implemented\n";
    case 502: return "502 bad gateway: the backend failed\n";
    case 503: return "503 no server available\n";
    case 504: return "504 gateway timeout: the backend did not answer in time\n";
    case 505: return "505 HTTP version not supported\n";
  }
  return "error\n";
}
}  // namespace

bool write_local_response(Buffer& out, int status, bool close, bool head_request, std::string_view extra) {
  std::string_view body = body_text(status);
  char head[256];
  int n = std::snprintf(head, sizeof(head),
                        "HTTP/1.1 %d %.*s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n%s",
                        status, static_cast<int>(reason_phrase(status).size()), reason_phrase(status).data(),
                        body.size(), close ? "Connection: close\r\n" : "");
  if (n <= 0 || !out.append({head, static_cast<size_t>(n)}) || !out.append(extra) || !out.append("\r\n"))
    return false;
  return head_request || out.append(body);
}

}  // namespace fulcrum::http
