// libFuzzer target: HttpResponseParser over arbitrary server bytes, whole and
// in pieces (sizes taken from the input), and parseHttpUrl over the same
// bytes. The pieces must give the same outcome as the whole; a finished
// response keeps its body under the limit. Checks invariants, not outputs.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "client/http_response.h"

namespace {

using derpd::client::HttpResponseParser;

// A violated invariant must crash so that libFuzzer keeps the input.
void check(bool ok) {
  if (!ok) std::abort();
}

constexpr size_t kLimit = 4096;

struct Outcome {
  bool error = false;
  bool done = false;
  int status = 0;
  std::string body;
};

// Feeds `text` in pieces of 1 + seed[i] % 17 bytes (seed empty: whole), then
// closes the connection when `close`.
Outcome run(const std::string& text, const std::string& seed, bool head, bool close) {
  HttpResponseParser p(head, kLimit);
  Outcome o;
  size_t at = 0;
  for (size_t i = 0; at < text.size() && !o.error; ++i) {
    size_t n = seed.empty() ? text.size() : 1 + static_cast<uint8_t>(seed[i % seed.size()]) % 17;
    n = std::min(n, text.size() - at);
    o.error = !p.feed(absl::string_view(text).substr(at, n)).ok();
    at += n;
  }
  if (!o.error && close && !p.done()) o.error = !p.finish().ok();
  o.done = !o.error && p.done();
  if (o.done) {
    o.status = p.response().status;
    o.body = p.response().body;
    check(o.status >= 200 && o.status <= 999);
    check(o.body.size() <= kLimit);
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const bool head = data[0] & 1;
  const bool close = data[0] & 2;
  const size_t seedLen = std::min<size_t>(data[1] % 8, size - 2);
  const std::string seed(reinterpret_cast<const char*>(data) + 2, seedLen);
  const std::string text(reinterpret_cast<const char*>(data) + 2 + seedLen, size - 2 - seedLen);
  Outcome whole = run(text, "", head, close);
  Outcome pieces = run(text, seed.empty() ? std::string(1, '\0') : seed, head, close);
  // Framing errors can be found at different points, but a completed
  // response is the same however the bytes arrive.
  check(whole.done == pieces.done);
  if (whole.done) check(whole.status == pieces.status && whole.body == pieces.body);
  auto url = derpd::client::parseHttpUrl(text);
  if (url.ok()) check(url->port != 0 && !url->host.empty() && url->target[0] == '/');
  return 0;
}
