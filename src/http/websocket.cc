#include "http/websocket.h"

#include <openssl/base64.h>
#include <openssl/sha.h>

#include <cstring>

namespace derpd::http::ws {
namespace {

constexpr char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

bool isControl(uint8_t op) { return op >= 0x8; }

// RFC 6455 7.4: the codes a peer may send in a Close frame.
bool sendableCloseCode(uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

// Whether bytes are well-formed UTF-8 (no overlongs, surrogates or values
// past U+10FFFF): a Close frame's reason must be.
bool validUtf8(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    static constexpr uint32_t kMinForLen[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLen[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

size_t putLength(uint8_t* out, uint8_t maskBit, uint64_t length) {
  if (length < 126) {
    out[1] = static_cast<uint8_t>(maskBit | length);
    return 2;
  }
  if (length <= 0xffff) {
    out[1] = maskBit | 126;
    out[2] = static_cast<uint8_t>(length >> 8);
    out[3] = static_cast<uint8_t>(length);
    return 4;
  }
  out[1] = maskBit | 127;
  for (int i = 0; i < 8; i++) out[2 + i] = static_cast<uint8_t>(length >> (56 - 8 * i));
  return 10;
}

}  // namespace

std::string acceptKey(absl::string_view clientKey) {
  std::string joined(clientKey);
  joined += kGuid;
  uint8_t digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const uint8_t*>(joined.data()), joined.size(), digest);
  uint8_t encoded[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  size_t n = EVP_EncodeBlock(encoded, digest, sizeof(digest));
  return std::string(reinterpret_cast<const char*>(encoded), n);
}

bool validClientKey(absl::string_view key) {
  if (key.size() != 24) return false;
  uint8_t out[18];
  size_t outLen = 0;
  return EVP_DecodeBase64(out, &outLen, sizeof(out), reinterpret_cast<const uint8_t*>(key.data()),
                          key.size()) == 1 &&
         outLen == 16;
}

size_t encodeServerHeader(uint8_t* out, Opcode op, uint64_t length) {
  out[0] = static_cast<uint8_t>(0x80 | op);
  return putLength(out, 0, length);
}

size_t encodeClientHeader(uint8_t* out, Opcode op, uint64_t length, const uint8_t mask[4],
                          bool fin) {
  out[0] = static_cast<uint8_t>((fin ? 0x80 : 0) | op);
  size_t n = putLength(out, 0x80, length);
  std::memcpy(out + n, mask, 4);
  return n + 4;
}

// Eight bytes at a time: the mask repeats every four, so one 64-bit pattern
// (started at the right phase) covers every aligned step.
void applyMask(uint8_t* p, size_t n, const uint8_t mask[4], uint64_t offset) {
  uint8_t pattern[8];
  for (size_t i = 0; i < 8; i++) pattern[i] = mask[(offset + i) & 3];
  uint64_t word;
  std::memcpy(&word, pattern, 8);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    v ^= word;
    std::memcpy(p + i, &v, 8);
  }
  for (; i < n; i++) p[i] ^= pattern[i & 7];
}

std::span<uint8_t> Decoder::headerSpace() {
  return {hdr_ + hdrHave_, static_cast<size_t>(hdrNeed_ - hdrHave_)};
}

Event Decoder::headerBytes(size_t n) {
  hdrHave_ = static_cast<uint8_t>(hdrHave_ + n);
  if (hdrHave_ < hdrNeed_) return {};
  if (hdrNeed_ == 2) {
    // The first two bytes say how long the header is; check them now.
    const uint8_t b0 = hdr_[0];
    const uint8_t b1 = hdr_[1];
    const uint8_t op = b0 & 0x0f;
    if (b0 & 0x70) return fail(kProtocolError, "reserved bits set");
    if (!(b1 & 0x80)) return fail(kProtocolError, "client frame not masked");
    if (op == kText) return fail(kUnsupportedData, "text message (DERP is binary)");
    if (op != kContinuation && op != kBinary && op != kClose && op != kPing && op != kPong) {
      return fail(kProtocolError, "unknown opcode");
    }
    const uint8_t len7 = b1 & 0x7f;
    if (isControl(op) && (!(b0 & 0x80) || len7 > kMaxControlPayload)) {
      return fail(kProtocolError, "control frame fragmented or over 125 bytes");
    }
    hdrNeed_ = static_cast<uint8_t>(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4);
    return {};
  }
  return startFrame();
}

Event Decoder::startFrame() {
  const bool fin = hdr_[0] & 0x80;
  opcode_ = hdr_[0] & 0x0f;
  const uint8_t len7 = hdr_[1] & 0x7f;
  uint64_t length = len7;
  size_t at = 2;
  if (len7 == 126) {
    length = (uint64_t{hdr_[2]} << 8) | hdr_[3];
    at = 4;
  } else if (len7 == 127) {
    length = 0;
    for (size_t i = 0; i < 8; i++) length = (length << 8) | hdr_[2 + i];
    at = 10;
  }
  std::memcpy(mask_, hdr_ + at, 4);
  hdrHave_ = 0;
  hdrNeed_ = 2;
  frames_++;
  if (isControl(opcode_)) {
    controlLen_ = static_cast<uint8_t>(length);
    controlHave_ = 0;
    if (length == 0) return finishControl();
    phase_ = Phase::kControl;
    return {};
  }
  if (opcode_ == kContinuation && !inMessage_) {
    return fail(kProtocolError, "continuation frame outside a fragmented message");
  }
  if (opcode_ == kBinary && inMessage_) {
    return fail(kProtocolError, "new message inside a fragmented one");
  }
  if (length > kMaxFramePayload) return fail(kMessageTooBig, "frame over 1 MiB");
  inMessage_ = !fin;
  left_ = length;
  offset_ = 0;
  phase_ = length > 0 ? Phase::kData : Phase::kHeader;
  return {};
}

void Decoder::data(uint8_t* p, size_t n) {
  if (p != nullptr) applyMask(p, n, mask_, offset_);
  offset_ += n;
  left_ -= n;
  if (left_ == 0) phase_ = Phase::kHeader;
}

std::span<uint8_t> Decoder::controlSpace() {
  return {control_ + controlHave_, static_cast<size_t>(controlLen_ - controlHave_)};
}

Event Decoder::controlBytes(size_t n) {
  controlHave_ = static_cast<uint8_t>(controlHave_ + n);
  if (controlHave_ < controlLen_) return {};
  return finishControl();
}

Event Decoder::finishControl() {
  applyMask(control_, controlLen_, mask_, 0);
  phase_ = Phase::kHeader;
  Event e;
  if (opcode_ == kPing) {
    e.kind = Event::kPing;
    e.payload = {control_, controlLen_};
    return e;
  }
  if (opcode_ == kPong) return e;
  // Close: echo a valid code (none: a normal close), refuse a malformed one.
  if (controlLen_ == 1) return fail(kProtocolError, "Close frame with a 1-byte body");
  uint16_t code = kNormal;
  if (controlLen_ >= 2) {
    code = static_cast<uint16_t>((control_[0] << 8) | control_[1]);
    if (!sendableCloseCode(code)) return fail(kProtocolError, "Close frame with an invalid code");
    if (!validUtf8(control_ + 2, controlLen_ - 2u)) {
      return fail(kInvalidPayload, "Close reason is not UTF-8");
    }
  }
  phase_ = Phase::kClosed;
  e.kind = Event::kClose;
  e.code = code;
  return e;
}

Event Decoder::fail(uint16_t code, const char* why) {
  phase_ = Phase::kClosed;
  Event e;
  e.kind = Event::kError;
  e.code = code;
  e.why = why;
  return e;
}

}  // namespace derpd::http::ws
