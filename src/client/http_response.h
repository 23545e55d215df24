// HTTP/1.1 responses as the blocking client (http_fetch.h) reads them, and
// the URLs it accepts. Pure functions over bytes; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace derpd::client {

struct HttpUrl {
  bool tls = false;    // https
  std::string host;    // without brackets for an IPv6 literal
  uint16_t port = 0;   // the scheme's default when the URL has none
  std::string target;  // path and query, at least "/"
  // The Host header's value: host, bracketed when IPv6, with a port only
  // when it is not the scheme's default.
  std::string hostHeader() const;
};

// http:// and https:// URLs with a host; no user info, no fragment.
absl::StatusOr<HttpUrl> parseHttpUrl(absl::string_view url);

struct HttpResponse {
  int status = 0;
  // In the order received; names lower-cased, values trimmed.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool truncated = false;  // the body is the first part only (HttpRequest::truncateBody)

  // The first header of that (lower-case) name, or nullptr.
  const std::string* header(absl::string_view lowerName) const;
  // All values of a header, in order (e.g. several Link headers).
  std::vector<std::string> headerValues(absl::string_view lowerName) const;
};

// Reads one response from the bytes a server sends: the head (at most 64 KiB),
// then a body framed by chunked transfer coding, Content-Length, or the
// connection's end. Pure; feed it what arrives.
class HttpResponseParser {
 public:
  // headRequest: the response to HEAD has no body whatever its headers say.
  // truncate: a body over maxBodyBytes is not an error: its first
  // maxBodyBytes are the response's body (truncated set) and the rest is
  // never read.
  HttpResponseParser(bool headRequest, size_t maxBodyBytes, bool truncate = false)
      : headRequest_(headRequest), truncate_(truncate), maxBody_(maxBodyBytes) {}

  // Takes the next bytes. An error is final and says what is malformed.
  absl::Status feed(absl::string_view bytes);
  // The peer closed the connection: ends a body that runs to the close, and
  // is an error when the response is incomplete.
  absl::Status finish();
  bool done() const { return state_ == State::kDone; }
  HttpResponse& response() { return response_; }

 private:
  enum class State {
    kHead,
    kLength,
    kChunkSize,
    kChunkData,
    kChunkEnd,
    kTrailers,
    kToClose,
    kDone
  };
  absl::Status parseHead(absl::string_view head);
  absl::Status step(bool* progressed);

  bool headRequest_;
  bool truncate_;
  size_t maxBody_;
  State state_ = State::kHead;
  std::string pending_;  // bytes received and not yet consumed
  uint64_t remaining_ = 0;
  HttpResponse response_;
};

}  // namespace derpd::client
