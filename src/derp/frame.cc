#include "derp/frame.h"

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace derpd::derp {
namespace {

constexpr std::array<uint8_t, 6> kDiscoMagic = {0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac};
// Magic + sender disco key (32) + nonce (24): anything shorter cannot be disco.
constexpr size_t kMinDiscoLen = kDiscoMagic.size() + 32 + 24;
constexpr size_t kIpLen = 16;
// PeerPresent prefix lengths of the layouts newer servers send.
constexpr size_t kPeerPresentWithAddrLen = kKeyLen + kIpLen + 2;

absl::Status frameError(absl::string_view frame, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("derp: bad ", frame, " frame: ", why));
}

absl::Status frameSizeError(absl::string_view frame, size_t got, absl::string_view want) {
  return frameError(frame, absl::StrCat("length ", got, ", want ", want));
}

uint16_t loadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

uint32_t loadU32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

uint8_t* storeU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
  return p + 2;
}

uint8_t* storeU32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
  return p + 4;
}

uint8_t* storeBytes(uint8_t* p, std::span<const uint8_t> b) {
  if (!b.empty()) std::memcpy(p, b.data(), b.size());
  return p + b.size();
}

NodeKey keyAt(std::span<const uint8_t> body, size_t offset) {
  return NodeKey::fromSpan(body.subspan(offset, kKeyLen));
}

PingData pingDataOf(std::span<const uint8_t> body) {
  PingData d;
  std::memcpy(d.data(), body.data(), kPingDataLen);
  return d;
}

// Frames carrying a packet behind one or more keys share their limits.
absl::Status checkPacketFrame(absl::string_view frame, size_t bodyLen, size_t keysLen) {
  if (bodyLen < keysLen) {
    return frameSizeError(frame, bodyLen, absl::StrCat("at least ", keysLen));
  }
  if (bodyLen - keysLen > kMaxPacketSize) {
    return frameError(
        frame, absl::StrCat("packet of ", bodyLen - keysLen, " bytes exceeds ", kMaxPacketSize));
  }
  return absl::OkStatus();
}

// Body length of each frame as encodeFrame writes it.
struct BodySize {
  size_t operator()(const ServerKeyFrame&) const { return kMagic.size() + kKeyLen; }
  size_t operator()(const ClientInfoFrame& f) const { return kKeyLen + f.sealed.size(); }
  size_t operator()(const ServerInfoFrame& f) const { return f.sealed.size(); }
  size_t operator()(const SendPacketFrame& f) const { return kKeyLen + f.packet.size(); }
  size_t operator()(const RecvPacketFrame& f) const { return kKeyLen + f.packet.size(); }
  size_t operator()(const KeepAliveFrame&) const { return 0; }
  size_t operator()(const NotePreferredFrame&) const { return 1; }
  size_t operator()(const PeerGoneFrame& f) const { return kKeyLen + (f.reason ? 1 : 0); }
  size_t operator()(const PeerPresentFrame& f) const { return f.ip ? kPeerPresentLen : kKeyLen; }
  size_t operator()(const ForwardPacketFrame& f) const { return 2 * kKeyLen + f.packet.size(); }
  size_t operator()(const WatchConnsFrame&) const { return 0; }
  size_t operator()(const ClosePeerFrame&) const { return kKeyLen; }
  size_t operator()(const PingFrame&) const { return kPingDataLen; }
  size_t operator()(const PongFrame&) const { return kPingDataLen; }
  size_t operator()(const HealthFrame& f) const { return f.problem.size(); }
  size_t operator()(const RestartingFrame&) const { return 8; }
  size_t operator()(const UnknownFrame& f) const { return f.body.size(); }
};

// Writes the body; returns the byte after it.
struct BodyWriter {
  uint8_t* p;

  uint8_t* operator()(const ServerKeyFrame& f) const {
    return storeBytes(storeBytes(p, kMagic), f.key.bytes);
  }
  uint8_t* operator()(const ClientInfoFrame& f) const {
    return storeBytes(storeBytes(p, f.key.bytes), f.sealed);
  }
  uint8_t* operator()(const ServerInfoFrame& f) const { return storeBytes(p, f.sealed); }
  uint8_t* operator()(const SendPacketFrame& f) const {
    return storeBytes(storeBytes(p, f.dst.bytes), f.packet);
  }
  uint8_t* operator()(const RecvPacketFrame& f) const {
    return storeBytes(storeBytes(p, f.src.bytes), f.packet);
  }
  uint8_t* operator()(const KeepAliveFrame&) const { return p; }
  uint8_t* operator()(const NotePreferredFrame& f) const {
    *p = f.preferred ? 1 : 0;
    return p + 1;
  }
  uint8_t* operator()(const PeerGoneFrame& f) const {
    uint8_t* q = storeBytes(p, f.key.bytes);
    if (f.reason) *q++ = static_cast<uint8_t>(*f.reason);
    return q;
  }
  uint8_t* operator()(const PeerPresentFrame& f) const {
    uint8_t* q = storeBytes(p, f.key.bytes);
    if (!f.ip) return q;
    q = storeU16(storeBytes(q, *f.ip), f.port);
    *q++ = f.flags;
    return q;
  }
  uint8_t* operator()(const ForwardPacketFrame& f) const {
    return storeBytes(storeBytes(storeBytes(p, f.src.bytes), f.dst.bytes), f.packet);
  }
  uint8_t* operator()(const WatchConnsFrame&) const { return p; }
  uint8_t* operator()(const ClosePeerFrame& f) const { return storeBytes(p, f.key.bytes); }
  uint8_t* operator()(const PingFrame& f) const { return storeBytes(p, f.data); }
  uint8_t* operator()(const PongFrame& f) const { return storeBytes(p, f.data); }
  uint8_t* operator()(const HealthFrame& f) const {
    return storeBytes(
        p, std::span(reinterpret_cast<const uint8_t*>(f.problem.data()), f.problem.size()));
  }
  uint8_t* operator()(const RestartingFrame& f) const {
    return storeU32(storeU32(p, f.reconnectInMs), f.tryForMs);
  }
  uint8_t* operator()(const UnknownFrame& f) const { return storeBytes(p, f.body); }
};

uint8_t frameTypeOf(const Frame& frame) {
  static constexpr FrameType kTypes[] = {
      FrameType::kServerKey,     FrameType::kClientInfo, FrameType::kServerInfo,
      FrameType::kSendPacket,    FrameType::kRecvPacket, FrameType::kKeepAlive,
      FrameType::kNotePreferred, FrameType::kPeerGone,   FrameType::kPeerPresent,
      FrameType::kForwardPacket, FrameType::kWatchConns, FrameType::kClosePeer,
      FrameType::kPing,          FrameType::kPong,       FrameType::kHealth,
      FrameType::kRestarting,
  };
  static_assert(std::size(kTypes) + 1 == std::variant_size_v<Frame>,
                "one FrameType per Frame alternative, in order, then UnknownFrame");
  if (const auto* unknown = std::get_if<UnknownFrame>(&frame)) return unknown->type;
  return static_cast<uint8_t>(kTypes[frame.index()]);
}

}  // namespace

std::optional<FrameHeader> decodeFrameHeader(std::span<const uint8_t> bytes) {
  if (bytes.size() < kFrameHeaderLen) return std::nullopt;
  return FrameHeader{bytes[0], loadU32(bytes.data() + 1)};
}

void writeFrameHeader(uint8_t* out, FrameType type, uint32_t length) {
  out[0] = static_cast<uint8_t>(type);
  storeU32(out + 1, length);
}

absl::StatusOr<Frame> parseFrameBody(uint8_t type, std::span<const uint8_t> body) {
  const size_t n = body.size();
  switch (static_cast<FrameType>(type)) {
    case FrameType::kServerKey: {
      // Bytes after the key are reserved for future use: ignore them.
      if (n < kMagic.size() + kKeyLen) {
        return frameSizeError("ServerKey", n, absl::StrCat("at least ", kMagic.size() + kKeyLen));
      }
      if (std::memcmp(body.data(), kMagic.data(), kMagic.size()) != 0) {
        return frameError("ServerKey", "wrong magic");
      }
      return ServerKeyFrame{keyAt(body, kMagic.size())};
    }
    case FrameType::kClientInfo:
      // The cap keeps an unauthenticated peer from pinning much memory
      // before the box is even opened.
      if (n < kMinClientInfoLen || n > kMaxClientInfoLen) {
        return frameSizeError("ClientInfo", n,
                              absl::StrCat(kMinClientInfoLen, "..", kMaxClientInfoLen));
      }
      return ClientInfoFrame{keyAt(body, 0), body.subspan(kKeyLen)};
    case FrameType::kServerInfo:
      if (n < kMinClientInfoLen - kKeyLen) {
        return frameSizeError("ServerInfo", n,
                              absl::StrCat("at least ", kMinClientInfoLen - kKeyLen));
      }
      return ServerInfoFrame{body};
    case FrameType::kSendPacket:
      if (auto s = checkPacketFrame("SendPacket", n, kKeyLen); !s.ok()) return s;
      return SendPacketFrame{keyAt(body, 0), body.subspan(kKeyLen)};
    case FrameType::kRecvPacket:
      if (auto s = checkPacketFrame("RecvPacket", n, kKeyLen); !s.ok()) return s;
      return RecvPacketFrame{keyAt(body, 0), body.subspan(kKeyLen)};
    case FrameType::kKeepAlive:
      // Go clients discard a KeepAlive body unread; do the same so the frame
      // can grow without breaking us.
      return KeepAliveFrame{};
    case FrameType::kNotePreferred:
      if (n != 1) return frameSizeError("NotePreferred", n, "1");
      return NotePreferredFrame{body[0] != 0};
    case FrameType::kPeerGone: {
      if (n < kKeyLen) return frameSizeError("PeerGone", n, absl::StrCat("at least ", kKeyLen));
      PeerGoneFrame f{keyAt(body, 0), std::nullopt};
      // Old servers send the key alone; newer ones append a reason.
      if (n > kKeyLen) f.reason = static_cast<PeerGoneReason>(body[kKeyLen]);
      return f;
    }
    case FrameType::kPeerPresent: {
      if (n < kKeyLen) {
        return frameSizeError("PeerPresent", n, absl::StrCat("at least ", kKeyLen));
      }
      PeerPresentFrame f;
      f.key = keyAt(body, 0);
      // Each newer layout extends the previous one; take what is there.
      if (n >= kPeerPresentWithAddrLen) {
        f.ip.emplace();
        std::memcpy(f.ip->data(), body.data() + kKeyLen, kIpLen);
        f.port = loadU16(body.data() + kKeyLen + kIpLen);
      }
      if (n >= kPeerPresentLen) f.flags = body[kPeerPresentWithAddrLen];
      return f;
    }
    case FrameType::kForwardPacket:
      if (auto s = checkPacketFrame("ForwardPacket", n, 2 * kKeyLen); !s.ok()) return s;
      return ForwardPacketFrame{keyAt(body, 0), keyAt(body, kKeyLen), body.subspan(2 * kKeyLen)};
    case FrameType::kWatchConns:
      if (n != 0) return frameSizeError("WatchConns", n, "0");
      return WatchConnsFrame{};
    case FrameType::kClosePeer:
      if (n != kKeyLen) return frameSizeError("ClosePeer", n, absl::StrCat(kKeyLen));
      return ClosePeerFrame{keyAt(body, 0)};
    case FrameType::kPing:
      if (n < kMinPingLen || n > kMaxPingLen) {
        return frameSizeError("Ping", n, absl::StrCat(kMinPingLen, "..", kMaxPingLen));
      }
      return PingFrame{pingDataOf(body)};
    case FrameType::kPong:
      // Only the first 8 bytes are the echo; tolerate padding as for Ping.
      if (n < kPingDataLen || n > kMaxPingLen) {
        return frameSizeError("Pong", n, absl::StrCat(kPingDataLen, "..", kMaxPingLen));
      }
      return PongFrame{pingDataOf(body)};
    case FrameType::kHealth:
      return HealthFrame{std::string_view(reinterpret_cast<const char*>(body.data()), n)};
    case FrameType::kRestarting:
      // Two durations; later fields, if any, are ignored.
      if (n < 8) return frameSizeError("Restarting", n, "at least 8");
      return RestartingFrame{loadU32(body.data()), loadU32(body.data() + 4)};
  }
  return UnknownFrame{type, body};
}

absl::StatusOr<std::optional<DecodedFrame>> decodeFrame(std::span<const uint8_t> bytes) {
  std::optional<FrameHeader> header = decodeFrameHeader(bytes);
  if (!header) return std::nullopt;
  // Refuse before buffering the body, so a peer cannot make us wait for (and
  // hold) a gigabyte.
  if (header->length > kMaxFrameLen) {
    return absl::InvalidArgumentError(absl::StrCat("derp: frame type 0x", absl::Hex(header->type),
                                                   " of ", header->length, " bytes exceeds ",
                                                   kMaxFrameLen));
  }
  const size_t total = kFrameHeaderLen + header->length;
  if (bytes.size() < total) return std::nullopt;
  absl::StatusOr<Frame> frame =
      parseFrameBody(header->type, bytes.subspan(kFrameHeaderLen, header->length));
  if (!frame.ok()) return frame.status();
  return DecodedFrame{*std::move(frame), total};
}

size_t encodedFrameSize(const Frame& frame) {
  return kFrameHeaderLen + std::visit(BodySize{}, frame);
}

size_t encodeFrame(const Frame& frame, std::span<uint8_t> out) {
  const size_t bodyLen = std::visit(BodySize{}, frame);
  // Both are caller bugs, and writing on would corrupt memory or the stream.
  if (out.size() < kFrameHeaderLen + bodyLen || bodyLen > UINT32_MAX) std::abort();
  out[0] = frameTypeOf(frame);
  storeU32(out.data() + 1, static_cast<uint32_t>(bodyLen));
  uint8_t* end = std::visit(BodyWriter{out.data() + kFrameHeaderLen}, frame);
  return static_cast<size_t>(end - out.data());
}

std::vector<uint8_t> encodeFrame(const Frame& frame) {
  std::vector<uint8_t> out(encodedFrameSize(frame));
  encodeFrame(frame, out);
  return out;
}

bool isDiscoPacket(std::span<const uint8_t> packet) {
  return packet.size() >= kMinDiscoLen &&
         std::memcmp(packet.data(), kDiscoMagic.data(), kDiscoMagic.size()) == 0;
}

}  // namespace derpd::derp
