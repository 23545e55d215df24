// A pure HTTP/1.1 request-head parser (no I/O, no body support: derpd's
// endpoints take none). Any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace derpd::http {

constexpr size_t kMaxRequestHead = 16 * 1024;

struct Header {
  std::string_view name;
  std::string_view value;  // leading/trailing spaces and tabs trimmed
};

// Views into the parsed bytes: valid while those bytes are.
struct Request {
  std::string_view method;
  std::string_view target;  // as sent, e.g. "/derp?x=1"
  std::string_view path;    // target without query
  int versionMinor = 1;     // HTTP/1.<minor>
  std::vector<Header> headers;
  size_t headLength = 0;    // bytes up to and including the blank line

  // First header with this name (case-insensitive), or empty.
  std::string_view header(std::string_view name) const;
  bool hasHeader(std::string_view name) const;
  // Connection: keep-alive semantics (HTTP/1.1 default on, "close" turns off;
  // HTTP/1.0 default off, "keep-alive" turns on).
  bool keepAlive() const;
};

enum class ParseStatus {
  kComplete,
  kNeedMore,
  kBadRequest,      // -> 400 and close
  kHeadTooLarge,    // -> 431 and close
};

struct ParseResult {
  ParseStatus status;
  Request request;  // meaningful only when kComplete
};

// Parses the request head at the start of bytes. Bytes after the head (a
// pipelined request or, after an upgrade, protocol bytes) are left alone:
// request.headLength says where they start. Lines end in CRLF (a bare LF is
// accepted, as Go does). Limits: head <= maxHead bytes.
ParseResult parseRequest(std::span<const uint8_t> bytes, size_t maxHead = kMaxRequestHead);

}  // namespace derpd::http
