// The DERP wire codec (PROTOCOL.md "Frames"): pure functions over bytes.
//
// Every frame is 1 byte type, 4 byte big-endian body length, then the body.
// Decoding never allocates: parsed frames hold spans into the input. Encoding
// writes into a caller's buffer. No I/O; any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "derp/key.h"

namespace derpd::derp {

enum class FrameType : uint8_t {
  kServerKey = 0x01,
  kClientInfo = 0x02,
  kServerInfo = 0x03,
  kSendPacket = 0x04,
  kRecvPacket = 0x05,
  kKeepAlive = 0x06,
  kNotePreferred = 0x07,
  kPeerGone = 0x08,
  kPeerPresent = 0x09,
  kForwardPacket = 0x0a,
  kWatchConns = 0x10,
  kClosePeer = 0x11,
  kPing = 0x12,
  kPong = 0x13,
  kHealth = 0x14,
  kRestarting = 0x15,
};

constexpr size_t kFrameHeaderLen = 5;
constexpr size_t kMaxPacketSize = 64 << 10;       // payload of Send/Recv/ForwardPacket
constexpr size_t kMinClientInfoLen = 32 + 24 + 16;  // key + nonce + empty box
constexpr size_t kMaxClientInfoLen = 256 << 10;     // derper's limit
constexpr size_t kMinPingLen = 8;
constexpr size_t kMaxPingLen = 1000;
constexpr size_t kPingDataLen = 8;
constexpr size_t kPeerPresentLen = 32 + 16 + 2 + 1;  // modern layout (51 B)
// Any frame longer than this closes the connection, known type or not.
constexpr size_t kMaxFrameLen = 1 << 20;
constexpr std::array<uint8_t, 8> kMagic = {0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91};
constexpr uint32_t kProtocolVersion = 2;

enum class PeerGoneReason : uint8_t { kDisconnected = 0, kNotHere = 1 };

enum PeerPresentFlags : uint8_t {
  kPeerPresentIsRegular = 1,
  kPeerPresentIsMeshPeer = 2,
  kPeerPresentIsProber = 4,
  kPeerPresentNotIdeal = 8,
};

using PingData = std::array<uint8_t, kPingDataLen>;

struct ServerKeyFrame { NodeKey key; };
struct ClientInfoFrame { NodeKey key; std::span<const uint8_t> sealed; };  // nonce(24)+box
struct ServerInfoFrame { std::span<const uint8_t> sealed; };               // nonce(24)+box
struct SendPacketFrame { NodeKey dst; std::span<const uint8_t> packet; };
struct RecvPacketFrame { NodeKey src; std::span<const uint8_t> packet; };
struct KeepAliveFrame {};
struct NotePreferredFrame { bool preferred; };
struct PeerGoneFrame {
  NodeKey key;
  std::optional<PeerGoneReason> reason;  // absent in the old 32-byte layout
};
struct PeerPresentFrame {
  NodeKey key;
  // Absent in the old 32-byte layout. ip is 16 bytes (IPv4-mapped for v4).
  std::optional<std::array<uint8_t, 16>> ip;
  uint16_t port = 0;
  uint8_t flags = 0;
};
struct ForwardPacketFrame { NodeKey src; NodeKey dst; std::span<const uint8_t> packet; };
struct WatchConnsFrame {};
struct ClosePeerFrame { NodeKey key; };
struct PingFrame { PingData data; };  // extra bytes after the first 8 are ignored
struct PongFrame { PingData data; };
struct HealthFrame { std::string_view problem; };
struct RestartingFrame { uint32_t reconnectInMs = 0; uint32_t tryForMs = 0; };
struct UnknownFrame { uint8_t type; std::span<const uint8_t> body; };

using Frame = std::variant<ServerKeyFrame, ClientInfoFrame, ServerInfoFrame, SendPacketFrame,
                           RecvPacketFrame, KeepAliveFrame, NotePreferredFrame, PeerGoneFrame,
                           PeerPresentFrame, ForwardPacketFrame, WatchConnsFrame,
                           ClosePeerFrame, PingFrame, PongFrame, HealthFrame,
                           RestartingFrame, UnknownFrame>;

struct FrameHeader {
  uint8_t type;
  uint32_t length;  // body length, header not counted
};

// The 5-byte header, or nullopt when fewer than 5 bytes are given.
std::optional<FrameHeader> decodeFrameHeader(std::span<const uint8_t> bytes);
void writeFrameHeader(uint8_t* out, FrameType type, uint32_t length);

// Parses one frame body of the given type. Enforces the structural limits in
// PROTOCOL.md (sizes of each type; packet <= 64 KiB; ClientInfo 72 B..64 KiB;
// NotePreferred exactly 1 B; WatchConns empty; ClosePeer exactly 32 B; Ping
// 8..1000 B; ...) and returns InvalidArgument naming the frame otherwise.
// Unknown types give UnknownFrame. The result borrows from body.
absl::StatusOr<Frame> parseFrameBody(uint8_t type, std::span<const uint8_t> body);

struct DecodedFrame {
  Frame frame;
  size_t consumed;  // header + body
};

// Decodes the first frame in bytes. nullopt: need more bytes. Error: the frame
// is malformed or its length exceeds kMaxFrameLen (decided from the header
// alone, before the body arrives).
absl::StatusOr<std::optional<DecodedFrame>> decodeFrame(std::span<const uint8_t> bytes);

// Encoded size (header included) of a frame, and encoding into out, which must
// have at least that many bytes. Returns bytes written. Current layouts are
// written: PeerGone with its reason byte when set, 51-byte PeerPresent when ip
// is set.
size_t encodedFrameSize(const Frame& frame);
size_t encodeFrame(const Frame& frame, std::span<uint8_t> out);
std::vector<uint8_t> encodeFrame(const Frame& frame);

// Disco packets (PROTOCOL.md): start with "TS" 0xf0 0x9f 0x92 0xac and are at
// least 62 bytes long.
bool isDiscoPacket(std::span<const uint8_t> packet);

}  // namespace derpd::derp
