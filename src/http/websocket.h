// WebSocket (RFC 6455) as DERP over WebSocket needs it, pure: the opening
// handshake's accept key, frame headers in both directions, and a server-side
// Decoder that turns a client's byte stream into its binary payload, checked
// as the RFC requires (masked, no reserved bits, binary only, control frames
// short and whole, continuations only inside a fragmented message) and
// answering Ping and Close through events.
//
// The Decoder never copies payload: it says where its own header bytes go
// and how many (exactly what the header needs, so no payload byte lands
// there), how many payload bytes the current frame has left, and unmasks
// payload in place wherever the caller put it (a DERP frame's pool buffer).
// A DERP frame may span WebSocket messages and a message may hold several
// DERP frames: to the Decoder the payload is a stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "absl/strings/string_view.h"

namespace derpd::http::ws {

enum Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xa,
};

// Close status codes (RFC 6455 7.4.1).
enum CloseCode : uint16_t {
  kNormal = 1000,
  kGoingAway = 1001,
  kProtocolError = 1002,
  kUnsupportedData = 1003,
  kNoStatus = 1005,  // never sent: a Close without a code
  kInvalidPayload = 1007,
  kMessageTooBig = 1009,
};

inline constexpr size_t kMaxHeaderLen = 14;        // 2 + 8 length + 4 mask
inline constexpr size_t kMaxServerHeaderLen = 10;  // unmasked
inline constexpr size_t kMaxControlPayload = 125;
// The largest data frame accepted: a DERP frame is at most 64 KiB and a bit,
// and a client that batches writes sends a few; more than this is no client.
inline constexpr uint64_t kMaxFramePayload = 1 << 20;

// Sec-WebSocket-Accept for a request's Sec-WebSocket-Key: base64 of the
// SHA-1 of the key and RFC 6455's GUID.
std::string acceptKey(absl::string_view clientKey);
// Whether a Sec-WebSocket-Key is well formed: base64 of 16 bytes.
bool validClientKey(absl::string_view key);

// A server frame's header (FIN set, unmasked) for `length` payload bytes
// into out (kMaxServerHeaderLen bytes of room); returns its size.
size_t encodeServerHeader(uint8_t* out, Opcode op, uint64_t length);
// A client frame's header (masked with `mask`) into out (kMaxHeaderLen of
// room); returns its size. For tests and clients.
size_t encodeClientHeader(uint8_t* out, Opcode op, uint64_t length, const uint8_t mask[4],
                          bool fin = true);
// XORs n bytes at p with the mask, the first of them being the payload's
// byte number `offset`.
void applyMask(uint8_t* p, size_t n, const uint8_t mask[4], uint64_t offset);

struct Event {
  enum Kind : uint8_t {
    kNone,   // nothing to do: read on
    kPing,   // answer with a Pong carrying `payload`
    kClose,  // the peer closes: answer with a Close carrying `code`, then close
    kError,  // a protocol violation: send a Close with `code`, then close
  };
  Kind kind = kNone;
  uint16_t code = 0;
  std::span<const uint8_t> payload;  // kPing: valid until the next call
  const char* why = "";              // kError
};

class Decoder {
 public:
  enum class Phase : uint8_t {
    kHeader,   // read header bytes into headerSpace()
    kData,     // dataLeft() payload bytes of a binary message follow
    kControl,  // read a control frame's payload into controlSpace()
    kClosed,   // a Close or an error was reported: read nothing more
  };
  Phase phase() const { return phase_; }

  // kHeader: where the next header bytes go, exactly as many as wanted.
  std::span<uint8_t> headerSpace();
  // n bytes were written at headerSpace().
  Event headerBytes(size_t n);

  // kData: bytes the current frame's payload has left (> 0).
  uint64_t dataLeft() const { return left_; }
  // n <= dataLeft() payload bytes at p: unmasked in place, and consumed
  // (p == nullptr: consumed unread, for bytes the caller discards).
  void data(uint8_t* p, size_t n);

  // kControl: where the control payload's next bytes go.
  std::span<uint8_t> controlSpace();
  Event controlBytes(size_t n);

  // Frames and payload bytes seen, for tests.
  uint64_t frames() const { return frames_; }

 private:
  Event startFrame();
  Event finishControl();
  Event fail(uint16_t code, const char* why);

  Phase phase_ = Phase::kHeader;
  uint8_t hdr_[kMaxHeaderLen] = {};
  uint8_t hdrHave_ = 0;
  uint8_t hdrNeed_ = 2;
  uint8_t opcode_ = 0;
  uint8_t mask_[4] = {};
  bool inMessage_ = false;  // a fragmented binary message awaits its FIN
  uint64_t left_ = 0;
  uint64_t offset_ = 0;  // payload bytes of this frame already seen (mask phase)
  uint8_t control_[kMaxControlPayload] = {};
  uint8_t controlLen_ = 0;
  uint8_t controlHave_ = 0;
  uint64_t frames_ = 0;
};

}  // namespace derpd::http::ws
