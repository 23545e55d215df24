#include "derp/frame.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <deque>
#include <memory>
#include <new>

#include "tests/vectors.h"

// Counts heap allocations so a test can prove that decoding allocates nothing
// (STYLE.md rule 2). Replacing the global operators is allowed in one TU.
namespace {
thread_local size_t allocationCount = 0;
}  // namespace

void* operator new(size_t n) {
  allocationCount++;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// GCC pairs the inlined free() with the library's operator new and warns,
// not seeing that operator new above is the malloc-backed replacement.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace derpd::derp {
namespace {

using ::derpd::testing::entries;
using ::derpd::testing::entryBytes;
using ::derpd::testing::findEntry;
using ::derpd::testing::hex;
using ::derpd::testing::loadVectors;
using ::derpd::testing::unhex;
using ::testing::HasSubstr;

NodeKey keyFromHex(const nlohmann::json& v) {
  return NodeKey::fromSpan(unhex(v.get<std::string>()));
}

// Decodes exactly one whole frame.
Frame decodeWhole(std::span<const uint8_t> bytes) {
  absl::StatusOr<std::optional<DecodedFrame>> d = decodeFrame(bytes);
  EXPECT_TRUE(d.ok()) << d.status();
  if (!d.ok() || !d->has_value()) {
    ADD_FAILURE() << "frame did not decode";
    return UnknownFrame{0xff, {}};
  }
  EXPECT_EQ((*d)->consumed, bytes.size());
  return (*d)->frame;
}

std::vector<uint8_t> frameBytes(uint8_t type, std::span<const uint8_t> body) {
  std::vector<uint8_t> out(kFrameHeaderLen);
  out[0] = type;
  writeFrameHeader(out.data(), static_cast<FrameType>(type), static_cast<uint32_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

TEST(FrameTest, EveryVectorDecodesAndReencodesByteForByte) {
  const nlohmann::json doc = loadVectors("frames.json");
  int checked = 0;
  for (const auto& e : entries(doc)) {
    SCOPED_TRACE(e.at("name").get<std::string>());
    const std::vector<uint8_t> bytes = entryBytes(e);
    const Frame f = decodeWhole(bytes);
    EXPECT_FALSE(std::holds_alternative<UnknownFrame>(f));
    EXPECT_EQ(encodedFrameSize(f), bytes.size());
    EXPECT_EQ(hex(encodeFrame(f)), hex(bytes));
    checked++;
  }
  EXPECT_EQ(checked, 25);
}

TEST(FrameTest, HandshakeFramesRoundTrip) {
  const nlohmann::json doc = loadVectors("handshake.json");
  for (const auto& e : entries(doc)) {
    SCOPED_TRACE(e.at("name").get<std::string>());
    const std::vector<uint8_t> bytes = entryBytes(e);
    const Frame f = decodeWhole(bytes);
    const std::vector<uint8_t> sealed = entryBytes(e, "box_hex");
    if (const auto* ci = std::get_if<ClientInfoFrame>(&f)) {
      EXPECT_EQ(ci->key, keyFromHex(e.at("client_public_hex")));
      EXPECT_EQ(hex(ci->sealed), hex(sealed));
    } else if (const auto* si = std::get_if<ServerInfoFrame>(&f)) {
      EXPECT_EQ(hex(si->sealed), hex(sealed));
    } else {
      ADD_FAILURE() << "not a ClientInfo or ServerInfo frame";
    }
    EXPECT_EQ(hex(encodeFrame(f)), hex(bytes));
  }
}

TEST(FrameTest, VectorFieldsDecode) {
  const nlohmann::json doc = loadVectors("frames.json");
  const NodeKey server = keyFromHex(doc.at("keys").at("server_public_hex"));
  const NodeKey client = keyFromHex(doc.at("keys").at("client_public_hex"));
  const NodeKey peer = keyFromHex(doc.at("keys").at("peer_public_hex"));

  // Decoded frames borrow from their input, so keep every input alive.
  std::deque<std::vector<uint8_t>> inputs;
  auto decodeAs = [&](const char* name, auto tag) {
    using T = decltype(tag);
    const Frame f = decodeWhole(inputs.emplace_back(entryBytes(findEntry(doc, name))));
    EXPECT_TRUE(std::holds_alternative<T>(f)) << name;
    return std::holds_alternative<T>(f) ? std::get<T>(f) : T{};
  };

  EXPECT_EQ(decodeAs("server_key", ServerKeyFrame{}).key, server);

  const auto send = decodeAs("send_packet", SendPacketFrame{});
  EXPECT_EQ(send.dst, peer);
  EXPECT_EQ(hex(send.packet), findEntry(doc, "send_packet").at("packet_hex"));
  EXPECT_TRUE(decodeAs("send_packet_empty", SendPacketFrame{}).packet.empty());

  const auto recv = decodeAs("recv_packet", RecvPacketFrame{});
  EXPECT_EQ(recv.src, client);
  EXPECT_EQ(hex(recv.packet), findEntry(doc, "recv_packet").at("packet_hex"));

  const auto fwd = decodeAs("forward_packet", ForwardPacketFrame{});
  EXPECT_EQ(fwd.src, client);
  EXPECT_EQ(fwd.dst, peer);
  EXPECT_EQ(hex(fwd.packet), findEntry(doc, "forward_packet").at("packet_hex"));

  EXPECT_TRUE(decodeAs("note_preferred_1", NotePreferredFrame{}).preferred);
  EXPECT_FALSE(decodeAs("note_preferred_0", NotePreferredFrame{true}).preferred);

  const PingData ping = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(decodeAs("ping", PingFrame{}).data, ping);
  EXPECT_EQ(decodeAs("pong_from_server", PongFrame{}).data, ping);
  EXPECT_EQ(decodeAs("pong_from_client", PongFrame{}).data, ping);
  EXPECT_EQ(decodeAs("close_peer", ClosePeerFrame{}).key, peer);
  decodeAs("watch_conns", WatchConnsFrame{});
  decodeAs("keep_alive", KeepAliveFrame{});

  EXPECT_EQ(decodeAs("health_problem", HealthFrame{}).problem, "duplicate client key");
  EXPECT_EQ(decodeAs("health_clear", HealthFrame{"x"}).problem, "");

  const auto restart = decodeAs("restarting", RestartingFrame{});
  EXPECT_EQ(restart.reconnectInMs, 1500u);
  EXPECT_EQ(restart.tryForMs, 10000u);
}

TEST(FrameTest, PeerGoneLayouts) {
  const nlohmann::json doc = loadVectors("frames.json");
  struct Case {
    const char* name;
    std::optional<PeerGoneReason> reason;
  };
  for (const Case& c : {Case{"peer_gone_v1_36", std::nullopt},
                        Case{"peer_gone_reason_disconnected", PeerGoneReason::kDisconnected},
                        Case{"peer_gone_reason_not_here", PeerGoneReason::kNotHere}}) {
    SCOPED_TRACE(c.name);
    const nlohmann::json e = findEntry(doc, c.name);
    const std::vector<uint8_t> bytes = entryBytes(e);
    const Frame f = decodeWhole(bytes);
    ASSERT_TRUE(std::holds_alternative<PeerGoneFrame>(f));
    const auto& pg = std::get<PeerGoneFrame>(f);
    EXPECT_EQ(pg.key, keyFromHex(e.at("peer_public_hex")));
    EXPECT_EQ(pg.reason, c.reason);
    // Built from fields rather than from the decoder's output.
    EXPECT_EQ(hex(encodeFrame(PeerGoneFrame{pg.key, c.reason})), hex(bytes));
  }
}

TEST(FrameTest, PeerPresentLayouts) {
  const nlohmann::json doc = loadVectors("frames.json");
  {
    const nlohmann::json e = findEntry(doc, "peer_present_v1_36");
    const std::vector<uint8_t> bytes = entryBytes(e);
    const Frame f = decodeWhole(bytes);
    ASSERT_TRUE(std::holds_alternative<PeerPresentFrame>(f));
    const auto& pp = std::get<PeerPresentFrame>(f);
    EXPECT_EQ(pp.key, keyFromHex(e.at("peer_public_hex")));
    EXPECT_FALSE(pp.ip.has_value());
    PeerPresentFrame fresh;
    fresh.key = pp.key;
    EXPECT_EQ(hex(encodeFrame(fresh)), hex(bytes));
  }
  struct Case {
    const char* name;
    std::string ipHex;
    uint16_t port;
  };
  for (const Case& c : {
           Case{"peer_present_modern_ipv4", "00000000000000000000ffff01020304", 5678},
           Case{"peer_present_modern_ipv6", "20010db8000000000000000000000001", 41641},
           Case{"peer_present_modern_notideal", "00000000000000000000ffffc0000207", 443},
       }) {
    SCOPED_TRACE(c.name);
    const nlohmann::json e = findEntry(doc, c.name);
    const std::vector<uint8_t> bytes = entryBytes(e);
    const Frame f = decodeWhole(bytes);
    ASSERT_TRUE(std::holds_alternative<PeerPresentFrame>(f));
    const auto& pp = std::get<PeerPresentFrame>(f);
    EXPECT_EQ(pp.key, keyFromHex(e.at("peer_public_hex")));
    ASSERT_TRUE(pp.ip.has_value());
    EXPECT_EQ(hex(*pp.ip), c.ipHex);
    EXPECT_EQ(pp.port, c.port);
    EXPECT_EQ(pp.flags, e.at("flags").get<int>());
  }
}

TEST(FrameTest, TolerantLayouts) {
  const NodeKey key = NodeKey::fromSpan(std::vector<uint8_t>(32, 7));
  // ServerKey with future bytes after the key.
  std::vector<uint8_t> body(kMagic.begin(), kMagic.end());
  body.insert(body.end(), key.bytes.begin(), key.bytes.end());
  body.insert(body.end(), {9, 9, 9});
  Frame f = decodeWhole(frameBytes(0x01, body));
  ASSERT_TRUE(std::holds_alternative<ServerKeyFrame>(f));
  EXPECT_EQ(std::get<ServerKeyFrame>(f).key, key);

  // PeerGone and PeerPresent longer than any layout we know.
  std::vector<uint8_t> gone(key.bytes.begin(), key.bytes.end());
  gone.insert(gone.end(), {1, 0xaa, 0xbb});
  f = decodeWhole(frameBytes(0x08, gone));
  ASSERT_TRUE(std::holds_alternative<PeerGoneFrame>(f));
  EXPECT_EQ(std::get<PeerGoneFrame>(f).reason, PeerGoneReason::kNotHere);

  std::vector<uint8_t> present(kPeerPresentLen + 4, 0);
  std::copy(key.bytes.begin(), key.bytes.end(), present.begin());
  present[kPeerPresentLen - 1] = kPeerPresentIsProber;
  f = decodeWhole(frameBytes(0x09, present));
  ASSERT_TRUE(std::holds_alternative<PeerPresentFrame>(f));
  EXPECT_EQ(std::get<PeerPresentFrame>(f).flags, kPeerPresentIsProber);

  // Ping padding is ignored; the echo is the first 8 bytes.
  std::vector<uint8_t> ping(kMaxPingLen, 0xee);
  ping[0] = 1;
  f = decodeWhole(frameBytes(0x12, ping));
  ASSERT_TRUE(std::holds_alternative<PingFrame>(f));
  EXPECT_EQ(std::get<PingFrame>(f).data[0], 1);

  // Any nonzero NotePreferred byte means preferred, as in Go.
  f = decodeWhole(frameBytes(0x07, std::vector<uint8_t>{2}));
  EXPECT_TRUE(std::get<NotePreferredFrame>(f).preferred);

  // Largest allowed packet.
  std::vector<uint8_t> send(kKeyLen + kMaxPacketSize, 0);
  f = decodeWhole(frameBytes(0x04, send));
  EXPECT_EQ(std::get<SendPacketFrame>(f).packet.size(), kMaxPacketSize);
}

struct BadBody {
  const char* what;
  uint8_t type;
  size_t len;
};

class FrameLimitTest : public ::testing::TestWithParam<BadBody> {};

TEST_P(FrameLimitTest, RejectedAsInvalidArgument) {
  const BadBody& c = GetParam();
  std::vector<uint8_t> body(c.len, 0);
  if (c.type == 0x01 && c.len >= kMagic.size()) {
    std::copy(kMagic.begin(), kMagic.end(), body.begin());
  }
  absl::StatusOr<Frame> f = parseFrameBody(c.type, body);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr(c.what));
  // The same through decodeFrame.
  absl::StatusOr<std::optional<DecodedFrame>> d = decodeFrame(frameBytes(c.type, body));
  EXPECT_FALSE(d.ok());
}

INSTANTIATE_TEST_SUITE_P(
    Limits, FrameLimitTest,
    ::testing::Values(
        BadBody{"SendPacket", 0x04, kKeyLen + kMaxPacketSize + 1},
        BadBody{"SendPacket", 0x04, kKeyLen - 1},
        BadBody{"RecvPacket", 0x05, kKeyLen + kMaxPacketSize + 1}, BadBody{"RecvPacket", 0x05, 0},
        BadBody{"ForwardPacket", 0x0a, 2 * kKeyLen + kMaxPacketSize + 1},
        BadBody{"ForwardPacket", 0x0a, 2 * kKeyLen - 1},
        BadBody{"ClientInfo", 0x02, kMinClientInfoLen - 1}, BadBody{"ClientInfo", 0x02, 56},
        BadBody{"ClientInfo", 0x02, 0}, BadBody{"ClientInfo", 0x02, kMaxClientInfoLen + 1},
        BadBody{"ServerInfo", 0x03, 39}, BadBody{"NotePreferred", 0x07, 0},
        BadBody{"NotePreferred", 0x07, 2}, BadBody{"WatchConns", 0x10, 1},
        BadBody{"ClosePeer", 0x11, 31}, BadBody{"ClosePeer", 0x11, 33},
        BadBody{"ClosePeer", 0x11, 0}, BadBody{"Ping", 0x12, 7}, BadBody{"Ping", 0x12, 0},
        BadBody{"Ping", 0x12, kMaxPingLen + 1}, BadBody{"Pong", 0x13, 7},
        BadBody{"ServerKey", 0x01, 39}, BadBody{"PeerGone", 0x08, 31},
        BadBody{"PeerPresent", 0x09, 31}, BadBody{"Restarting", 0x15, 7}),
    [](const ::testing::TestParamInfo<BadBody>& info) {
      return std::string(info.param.what) + "_" + std::to_string(info.param.len);
    });

TEST(FrameTest, ServerKeyWithWrongMagicIsRejected) {
  std::vector<uint8_t> body(kMagic.size() + kKeyLen, 0);
  absl::StatusOr<Frame> f = parseFrameBody(0x01, body);
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("magic"));
}

TEST(FrameTest, BoundaryLengthsAreAccepted) {
  for (const auto& [type, len] : std::vector<std::pair<uint8_t, size_t>>{
           {0x02, kMinClientInfoLen},
           {0x02, kMaxClientInfoLen},
           {0x12, kMinPingLen},
           {0x12, kMaxPingLen},
           {0x0a, 2 * kKeyLen + kMaxPacketSize},
           {0x05, kKeyLen + kMaxPacketSize},
       }) {
    SCOPED_TRACE(::testing::Message() << "type " << int{type} << " len " << len);
    std::vector<uint8_t> body(len, 0);
    EXPECT_TRUE(parseFrameBody(type, body).ok());
  }
}

TEST(FrameTest, OversizedFrameIsRejectedFromHeaderAlone) {
  // Only the header: the body has not arrived, and must not be waited for.
  std::array<uint8_t, kFrameHeaderLen> header;
  writeFrameHeader(header.data(), FrameType::kSendPacket, kMaxFrameLen + 1);
  absl::StatusOr<std::optional<DecodedFrame>> d = decodeFrame(header);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("exceeds"));

  // Unknown types get no exemption.
  header[0] = 0x7f;
  EXPECT_FALSE(decodeFrame(header).ok());

  // Exactly kMaxFrameLen just needs more bytes.
  writeFrameHeader(header.data(), FrameType::kHealth, kMaxFrameLen);
  d = decodeFrame(header);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->has_value());
}

TEST(FrameTest, TruncatedInputNeedsMore) {
  const std::vector<uint8_t> bytes =
      entryBytes(findEntry(loadVectors("frames.json"), "send_packet"));
  for (size_t n = 0; n < bytes.size(); n++) {
    SCOPED_TRACE(n);
    absl::StatusOr<std::optional<DecodedFrame>> d = decodeFrame(std::span(bytes).first(n));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_FALSE(d->has_value());
  }
  EXPECT_FALSE(decodeFrameHeader(std::span(bytes).first(4)).has_value());
  std::optional<FrameHeader> h = decodeFrameHeader(bytes);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->type, 0x04);
  EXPECT_EQ(h->length, bytes.size() - kFrameHeaderLen);
}

TEST(FrameTest, DecodesOneFrameOfAStream) {
  const nlohmann::json doc = loadVectors("frames.json");
  std::vector<uint8_t> stream = entryBytes(findEntry(doc, "ping"));
  const size_t first = stream.size();
  const std::vector<uint8_t> second = entryBytes(findEntry(doc, "keep_alive"));
  stream.insert(stream.end(), second.begin(), second.end());
  absl::StatusOr<std::optional<DecodedFrame>> d = decodeFrame(stream);
  ASSERT_TRUE(d.ok() && d->has_value());
  EXPECT_EQ((*d)->consumed, first);
  EXPECT_TRUE(std::holds_alternative<PingFrame>((*d)->frame));
  d = decodeFrame(std::span(stream).subspan(first));
  ASSERT_TRUE(d.ok() && d->has_value());
  EXPECT_TRUE(std::holds_alternative<KeepAliveFrame>((*d)->frame));
}

TEST(FrameTest, UnknownTypeIsSkippableNotFatal) {
  for (uint8_t type : {0x00, 0x0b, 0x0f, 0x16, 0xff}) {
    SCOPED_TRACE(int{type});
    const std::vector<uint8_t> body = {1, 2, 3};
    const std::vector<uint8_t> bytes = frameBytes(type, body);
    const Frame f = decodeWhole(bytes);
    ASSERT_TRUE(std::holds_alternative<UnknownFrame>(f));
    EXPECT_EQ(std::get<UnknownFrame>(f).type, type);
    EXPECT_EQ(hex(std::get<UnknownFrame>(f).body), "010203");
    EXPECT_EQ(hex(encodeFrame(f)), hex(bytes));
  }
}

TEST(FrameTest, EncodeIntoCallerBuffer) {
  const nlohmann::json e = findEntry(loadVectors("frames.json"), "recv_packet");
  const std::vector<uint8_t> packet = unhex(e.at("packet_hex").get<std::string>());
  const RecvPacketFrame frame{keyFromHex(e.at("src_public_hex")), packet};
  std::vector<uint8_t> buf(encodedFrameSize(frame) + 10, 0xcc);
  EXPECT_EQ(encodeFrame(frame, buf), buf.size() - 10);
  const std::vector<uint8_t> written(buf.begin(), buf.end() - 10);
  EXPECT_EQ(hex(written), e.at("hex").get<std::string>());
  EXPECT_EQ(buf.back(), 0xcc);  // nothing written past the frame
}

TEST(FrameTest, DecodingDoesNotAllocate) {
  const nlohmann::json doc = loadVectors("frames.json");
  std::vector<std::vector<uint8_t>> inputs;
  for (const auto& e : entries(doc)) inputs.push_back(entryBytes(e));
  size_t decoded = 0;
  const size_t before = allocationCount;
  for (const auto& bytes : inputs) {
    absl::StatusOr<std::optional<DecodedFrame>> d = decodeFrame(bytes);
    if (d.ok() && d->has_value()) decoded++;
  }
  const size_t allocations = allocationCount - before;
  EXPECT_EQ(decoded, inputs.size());
  EXPECT_EQ(allocations, 0u);
  // The counter does see allocations, so the zero above means something.
  auto probe = std::make_unique<int>(1);
  EXPECT_GT(allocationCount, before + allocations);
}

TEST(FrameTest, DiscoPackets) {
  std::vector<uint8_t> disco = {0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac};
  disco.resize(62, 0);
  EXPECT_TRUE(isDiscoPacket(disco));
  EXPECT_FALSE(isDiscoPacket(std::span(disco).first(61)));
  disco.push_back(1);
  EXPECT_TRUE(isDiscoPacket(disco));
  disco[5] = 0xad;
  EXPECT_FALSE(isDiscoPacket(disco));
  EXPECT_FALSE(isDiscoPacket({}));
  EXPECT_FALSE(isDiscoPacket(
      entryBytes(findEntry(loadVectors("frames.json"), "send_packet"), "packet_hex")));
}

}  // namespace
}  // namespace derpd::derp
