// The WebSocket codec against RFC 6455's own examples (sections 1.3 and 5.7)
// and the rules a server must enforce on client frames.
#include "http/websocket.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace derpd::http::ws {
namespace {

using Bytes = std::vector<uint8_t>;

struct Fed {
  Bytes payload;  // the binary stream, unmasked
  std::vector<Event::Kind> events;
  std::vector<uint16_t> codes;
  Bytes pingPayload;
};

// Feeds `in` to a decoder `chunk` bytes at a time, the way the relay does:
// header and control bytes into the decoder's own space, payload unmasked in
// place in the caller's buffer.
Fed feed(Decoder& d, const Bytes& in, size_t chunk) {
  Fed out;
  size_t i = 0;
  while (i < in.size() && d.phase() != Decoder::Phase::kClosed) {
    size_t avail = std::min(chunk, in.size() - i);
    Event e;
    if (d.phase() == Decoder::Phase::kHeader) {
      std::span<uint8_t> s = d.headerSpace();
      size_t n = std::min(avail, s.size());
      std::copy(in.begin() + i, in.begin() + i + n, s.begin());
      i += n;
      e = d.headerBytes(n);
    } else if (d.phase() == Decoder::Phase::kControl) {
      std::span<uint8_t> s = d.controlSpace();
      size_t n = std::min(avail, s.size());
      std::copy(in.begin() + i, in.begin() + i + n, s.begin());
      i += n;
      e = d.controlBytes(n);
    } else {
      size_t n = static_cast<size_t>(std::min<uint64_t>(avail, d.dataLeft()));
      Bytes piece(in.begin() + i, in.begin() + i + n);
      d.data(piece.data(), n);
      out.payload.insert(out.payload.end(), piece.begin(), piece.end());
      i += n;
    }
    if (e.kind != Event::kNone) {
      out.events.push_back(e.kind);
      out.codes.push_back(e.code);
      if (e.kind == Event::kPing) out.pingPayload.assign(e.payload.begin(), e.payload.end());
    }
  }
  return out;
}

Bytes str(const std::string& s) { return Bytes(s.begin(), s.end()); }

Bytes clientFrame(Opcode op, const Bytes& payload, bool fin = true,
                  const uint8_t mask[4] = nullptr) {
  static constexpr uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};
  if (mask == nullptr) mask = kMask;
  uint8_t hdr[kMaxHeaderLen];
  size_t n = encodeClientHeader(hdr, op, payload.size(), mask, fin);
  Bytes out(hdr, hdr + n);
  Bytes body = payload;
  applyMask(body.data(), body.size(), mask, 0);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(WebSocketTest, HandshakeAcceptKeyFromRfc6455) {
  EXPECT_EQ(acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_TRUE(validClientKey("dGhlIHNhbXBsZSBub25jZQ=="));
  EXPECT_FALSE(validClientKey(""));
  EXPECT_FALSE(validClientKey("dGhlIHNhbXBsZSBub25jZQ"));    // no padding
  EXPECT_FALSE(validClientKey("dGhlIHNhbXBsZSBub25jZXg="));  // 17 bytes
  EXPECT_FALSE(validClientKey("dGhlIHNhbXBsZSBub25j!Q=="));  // not base64
}

TEST(WebSocketTest, HeadersOfRfc6455Section57) {
  uint8_t out[kMaxHeaderLen];
  // "A single-frame unmasked text message": 0x81 0x05.
  ASSERT_EQ(encodeServerHeader(out, kText, 5), 2u);
  EXPECT_EQ(Bytes(out, out + 2), (Bytes{0x81, 0x05}));
  // "A single-frame masked text message": 0x81 0x85 0x37 0xfa 0x21 0x3d, then
  // 0x7f 0x9f 0x4d 0x51 0x58 ("Hello" masked).
  Bytes masked = clientFrame(kText, str("Hello"));
  EXPECT_EQ(masked, (Bytes{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
  // "256 bytes binary message in a single unmasked frame": 0x82 0x7E 0x0100.
  ASSERT_EQ(encodeServerHeader(out, kBinary, 256), 4u);
  EXPECT_EQ(Bytes(out, out + 4), (Bytes{0x82, 0x7e, 0x01, 0x00}));
  // "64KiB binary message in a single unmasked frame": 0x82 0x7F 0x0000000000010000.
  ASSERT_EQ(encodeServerHeader(out, kBinary, 65536), 10u);
  EXPECT_EQ(Bytes(out, out + 10), (Bytes{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}));
  // Boundaries of the three length forms.
  EXPECT_EQ(encodeServerHeader(out, kBinary, 125), 2u);
  EXPECT_EQ(encodeServerHeader(out, kBinary, 126), 4u);
  EXPECT_EQ(encodeServerHeader(out, kBinary, 65535), 4u);
  // "Unmasked Ping request": 0x89 0x05; "masked Ping response": 0x8a 0x85 ...
  ASSERT_EQ(encodeServerHeader(out, kPing, 5), 2u);
  EXPECT_EQ(Bytes(out, out + 2), (Bytes{0x89, 0x05}));
  EXPECT_EQ(clientFrame(kPong, str("Hello")),
            (Bytes{0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
}

TEST(WebSocketTest, BinaryStreamIsTheSameWhateverTheChunkingAndFraming) {
  Bytes stream;
  for (int i = 0; i < 70000; i++) stream.push_back(static_cast<uint8_t>(i * 7 + 3));
  const uint8_t m2[4] = {1, 2, 3, 4};
  // Three messages: a small one, one in three fragments (empty middle), a big one.
  Bytes in = concat({clientFrame(kBinary, Bytes(stream.begin(), stream.begin() + 5)),
                     clientFrame(kBinary, Bytes(stream.begin() + 5, stream.begin() + 300), false),
                     clientFrame(kContinuation, {}, false, m2),
                     clientFrame(kContinuation, Bytes(stream.begin() + 300, stream.begin() + 301)),
                     clientFrame(kBinary, Bytes(stream.begin() + 301, stream.end()), true, m2)});
  for (size_t chunk : {size_t{1}, size_t{3}, size_t{7}, size_t{4096}, in.size()}) {
    Decoder d;
    Fed f = feed(d, in, chunk);
    EXPECT_EQ(f.payload, stream) << "chunk " << chunk;
    EXPECT_TRUE(f.events.empty()) << "chunk " << chunk;
    EXPECT_EQ(d.frames(), 5u);
    EXPECT_EQ(d.phase(), Decoder::Phase::kHeader);
  }
}

TEST(WebSocketTest, PingIsAnsweredWithItsPayloadEvenBetweenFragments) {
  Decoder d;
  Bytes in = concat({clientFrame(kBinary, str("ab"), false), clientFrame(kPing, str("Hello")),
                     clientFrame(kContinuation, str("cd")), clientFrame(kPong, str("x"))});
  Fed f = feed(d, in, 1);
  EXPECT_EQ(f.payload, str("abcd"));
  ASSERT_EQ(f.events, (std::vector<Event::Kind>{Event::kPing}));
  EXPECT_EQ(f.pingPayload, str("Hello"));
}

TEST(WebSocketTest, CloseIsEchoedAndEndsReading) {
  {
    Decoder d;
    Fed f = feed(d,
                 concat({clientFrame(kClose, {0x03, 0xe8, 'b', 'y', 'e'}),
                         clientFrame(kBinary, str("late"))}),
                 2);
    ASSERT_EQ(f.events, (std::vector<Event::Kind>{Event::kClose}));
    EXPECT_EQ(f.codes[0], kNormal);
    EXPECT_TRUE(f.payload.empty());  // nothing after a Close is read
    EXPECT_EQ(d.phase(), Decoder::Phase::kClosed);
  }
  {
    Decoder d;
    Fed f = feed(d, clientFrame(kClose, {}), 100);  // no code: answered as normal
    ASSERT_EQ(f.events, (std::vector<Event::Kind>{Event::kClose}));
    EXPECT_EQ(f.codes[0], kNormal);
  }
  {
    Decoder d;
    Fed f = feed(d, clientFrame(kClose, {0x0f, 0xa0}), 100);  // 4000: an application's
    EXPECT_EQ(f.codes[0], 4000);
  }
}

struct Violation {
  const char* name;
  Bytes bytes;
  uint16_t code;
};

TEST(WebSocketTest, ViolationsCloseWithTheRightCode) {
  Bytes unmasked = {0x82, 0x02, 'h', 'i'};
  Bytes rsv = clientFrame(kBinary, str("hi"));
  rsv[0] |= 0x40;
  Bytes badOpcode = clientFrame(kBinary, str("hi"));
  badOpcode[0] = 0x83;
  Bytes bigPing = clientFrame(kPing, Bytes(126, 'p'));
  Bytes fragmentedPing = clientFrame(kPing, str("p"), false);
  Bytes huge = clientFrame(kBinary, {});
  huge[1] = 0x80 | 127;  // a 64-bit length follows, replacing the mask
  huge.resize(2);
  for (uint8_t b : {0, 0, 0, 0, 0, 0x10, 0, 1}) huge.push_back(b);  // 1 MiB + 1
  for (uint8_t b : {1, 2, 3, 4}) huge.push_back(b);
  const Violation cases[] = {
      {"unmasked", unmasked, kProtocolError},
      {"reserved bit", rsv, kProtocolError},
      {"unknown opcode", badOpcode, kProtocolError},
      {"text", clientFrame(kText, str("hi")), kUnsupportedData},
      {"control over 125", bigPing, kProtocolError},
      {"fragmented control", fragmentedPing, kProtocolError},
      {"lone continuation", clientFrame(kContinuation, str("x")), kProtocolError},
      {"binary inside a fragmented message",
       concat({clientFrame(kBinary, str("a"), false), clientFrame(kBinary, str("b"))}),
       kProtocolError},
      {"frame over 1 MiB", huge, kMessageTooBig},
      {"close with 1 byte", clientFrame(kClose, {0x03}), kProtocolError},
      {"close with 1005", clientFrame(kClose, {0x03, 0xed}), kProtocolError},
      {"close with code 999", clientFrame(kClose, {0x03, 0xe7}), kProtocolError},
      {"close reason not UTF-8", clientFrame(kClose, {0x03, 0xe8, 0xc0, 0x80}), kInvalidPayload},
  };
  for (const Violation& v : cases) {
    for (size_t chunk : {size_t{1}, size_t{64}}) {
      Decoder d;
      Fed f = feed(d, v.bytes, chunk);
      ASSERT_EQ(f.events.size(), 1u) << v.name;
      EXPECT_EQ(f.events[0], Event::kError) << v.name;
      EXPECT_EQ(f.codes[0], v.code) << v.name;
      EXPECT_EQ(d.phase(), Decoder::Phase::kClosed) << v.name;
    }
  }
}

TEST(WebSocketTest, MaskAppliesAtAnyOffsetAndLength) {
  const uint8_t mask[4] = {0xa1, 0xb2, 0xc3, 0xd4};
  for (size_t offset = 0; offset < 9; offset++) {
    for (size_t n = 0; n < 40; n++) {
      Bytes p(n, 0);
      applyMask(p.data(), n, mask, offset);
      for (size_t i = 0; i < n; i++) ASSERT_EQ(p[i], mask[(offset + i) % 4]) << offset << " " << n;
    }
  }
}

}  // namespace
}  // namespace derpd::http::ws
