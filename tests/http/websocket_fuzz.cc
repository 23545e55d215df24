// libFuzzer target: the WebSocket Decoder over arbitrary client bytes, fed
// once in the largest pieces it takes and once in small pieces whose sizes
// the input chooses; both must see the same payload stream, the same events
// and end in the same phase, and the decoder must never ask for more header
// or control bytes than a header or control frame can have.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "http/websocket.h"

namespace {

using derpd::http::ws::Decoder;
using derpd::http::ws::Event;

void check(bool ok) {
  if (!ok) std::abort();
}

struct Seen {
  std::vector<uint8_t> payload;
  std::vector<uint32_t> events;  // kind << 16 | code
  Decoder::Phase end;
};

Seen run(std::span<const uint8_t> in, std::span<const uint8_t> chunks) {
  Decoder d;
  Seen seen;
  size_t i = 0;
  size_t k = 0;
  while (i < in.size() && d.phase() != Decoder::Phase::kClosed) {
    size_t avail = in.size() - i;
    if (!chunks.empty()) avail = std::min<size_t>(avail, 1 + chunks[k++ % chunks.size()] % 16);
    Event e;
    if (d.phase() == Decoder::Phase::kHeader) {
      std::span<uint8_t> s = d.headerSpace();
      check(!s.empty() && s.size() <= derpd::http::ws::kMaxHeaderLen);
      size_t n = std::min(avail, s.size());
      std::copy(in.begin() + static_cast<ptrdiff_t>(i), in.begin() + static_cast<ptrdiff_t>(i + n),
                s.begin());
      e = d.headerBytes(n);
      i += n;
    } else if (d.phase() == Decoder::Phase::kControl) {
      std::span<uint8_t> s = d.controlSpace();
      check(!s.empty() && s.size() <= derpd::http::ws::kMaxControlPayload);
      size_t n = std::min(avail, s.size());
      std::copy(in.begin() + static_cast<ptrdiff_t>(i), in.begin() + static_cast<ptrdiff_t>(i + n),
                s.begin());
      e = d.controlBytes(n);
      i += n;
    } else {
      check(d.dataLeft() > 0 && d.dataLeft() <= derpd::http::ws::kMaxFramePayload);
      size_t n = static_cast<size_t>(std::min<uint64_t>(avail, d.dataLeft()));
      std::vector<uint8_t> piece(in.begin() + static_cast<ptrdiff_t>(i),
                                 in.begin() + static_cast<ptrdiff_t>(i + n));
      d.data(piece.data(), n);
      seen.payload.insert(seen.payload.end(), piece.begin(), piece.end());
      i += n;
    }
    if (e.kind != Event::kNone) {
      seen.events.push_back(uint32_t{e.kind} << 16 | e.code);
      if (e.kind == Event::kPing) check(e.payload.size() <= derpd::http::ws::kMaxControlPayload);
      if (e.kind == Event::kError) check(e.code >= 1000 && e.code < 1016);
      if (e.kind == Event::kClose || e.kind == Event::kError) {
        check(d.phase() == Decoder::Phase::kClosed);
      }
    }
  }
  seen.end = d.phase();
  return seen;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // The first byte says how many of the next bytes choose chunk sizes.
  size_t nChunks = std::min<size_t>(data[0] % 8, size - 1);
  std::span<const uint8_t> chunks(data + 1, nChunks);
  std::span<const uint8_t> in(data + 1 + nChunks, size - 1 - nChunks);
  Seen whole = run(in, {});
  Seen pieces = run(in, chunks);
  check(whole.payload == pieces.payload);
  check(whole.events == pieces.events);
  check(whole.end == pieces.end);
  return 0;
}
