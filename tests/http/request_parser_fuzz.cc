// libFuzzer target: parseRequest over arbitrary bytes and, when a head parses,
// route it over plain and TLS; and the same bytes through HeadBuffer in
// pieces, which must agree with parseRequest on the whole stream. Checks
// invariants rather than outputs.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>

#include "http/head_buffer.h"
#include "http/request_parser.h"
#include "http/routes.h"

namespace {

constexpr std::string_view kServerKeyHex =
    "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";

// A violated invariant must crash so that libFuzzer keeps the input.
void check(bool ok) {
  if (!ok) std::abort();
}

bool within(std::string_view inner, std::span<const uint8_t> outer) {
  const auto* begin = reinterpret_cast<const char*>(outer.data());
  return inner.empty() ||
         (inner.data() >= begin && inner.data() + inner.size() <= begin + outer.size());
}

// Feeds the bytes to a HeadBuffer in pieces (1 to 16 bytes, or all the rest
// at once; drawn from the bytes themselves), taking each head it completes as
// a keep-alive server would. Whatever it answers must be what parseRequest
// says of the stream from the same offset, and it must never wait for more
// while the bytes it holds contain a complete head. (It may wait where
// parseRequest already sees garbage: it parses once a line ends.)
void checkHeadBuffer(std::span<const uint8_t> bytes) {
  using namespace derpd::http;
  HeadBuffer hb;
  size_t offset = 0;  // where the buffer's first byte is in the stream
  size_t fed = 0;
  bool stopped = false;  // an error answer: a server closes here
  while (fed < bytes.size() && !stopped) {
    const size_t rest = bytes.size() - fed;
    const size_t piece = bytes[fed] & 0x80 ? rest : std::min<size_t>(1 + bytes[fed] % 16, rest);
    hb.append(bytes.data() + fed, piece);
    size_t lastAppendAt = fed - offset;  // where this piece starts in the buffer
    fed += piece;
    for (;;) {
      check(hb.size() == fed - offset);
      const ParseResult r = hb.next();
      const ParseResult ref = parseRequest(bytes.subspan(offset, fed - offset));
      if (r.status == ParseStatus::kNeedMore) {
        check(ref.status != ParseStatus::kComplete);
        break;
      }
      check(ref.status == r.status);
      if (r.status != ParseStatus::kComplete) {
        stopped = true;
        break;
      }
      const size_t head = r.request.headLength;
      check(ref.request.headLength == head);
      check(hb.fromLastAppend(head) == (head > lastAppendAt ? head - lastAppendAt : 0));
      hb.consume(head);
      offset += head;
      lastAppendAt = lastAppendAt > head ? lastAppendAt - head : 0;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace derpd::http;
  const std::span<const uint8_t> bytes(data, size);
  // A small limit as well as the real one, so that the too-large paths get exercised.
  for (size_t maxHead : {kMaxRequestHead, size_t{64}}) {
    const ParseResult result = parseRequest(bytes, maxHead);
    if (result.status == ParseStatus::kHeadTooLarge) check(size > maxHead);
    if (result.status != ParseStatus::kComplete) continue;

    const Request& request = result.request;
    check(request.headLength > 0 && request.headLength <= size && request.headLength <= maxHead);
    check(data[request.headLength - 1] == '\n');
    check(within(request.method, bytes) && within(request.target, bytes) &&
          within(request.path, bytes));
    for (const Header& h : request.headers) check(within(h.name, bytes) && within(h.value, bytes));
    // Whatever follows the head must not change how the head parses.
    const ParseResult again = parseRequest(bytes.first(request.headLength), maxHead);
    check(again.status == ParseStatus::kComplete && again.request.headLength == request.headLength);

    for (bool tls : {false, true}) {
      const RouteResult routed = route(request, RouteContext{kServerKeyHex, tls});
      if (routed.action == RouteAction::kUpgradeDerpFast) {
        check(routed.response.empty());
      } else {
        check(std::string_view(routed.response).starts_with("HTTP/1.1 "));
        check(routed.response.find("\r\n\r\n") != std::string::npos);
      }
    }
  }
  checkHeadBuffer(bytes);
  return 0;
}
