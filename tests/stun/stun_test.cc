#include "stun/stun.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "tests/vectors.h"

namespace derpd::stun {
namespace {

using derpd::testing::entryBytes;
using derpd::testing::findEntry;
using derpd::testing::hex;
using derpd::testing::loadVectors;
using derpd::testing::unhex;

// Datagrams captured on this machine from the Debian clients (see the top of
// src/stun/stun.cc), with the replies each tool accepted and the address it
// reported.
constexpr char kTurnutilsRequest[] = "000100002112a44283a893df5409b50f2c7c1182";
constexpr char kTurnutilsResponse[] =
    "0101000c2112a44283a893df5409b50f2c7c1182002000080001e6165e12a443";  // 127.0.0.1:50948
constexpr char kTurnutilsRequestV6[] = "000100002112a442c7dca1fb4907a3b30691127c";
constexpr char kTurnutilsResponseV6[] =  // [::1]:53692
    "010100182112a442c7dca1fb4907a3b30691127c002000140002f0ae2112a442c7dca1fb4907a3b30691127d";
constexpr char kStunTest1Request[] = "00010008016dee4662f0f0445432e8225068e8100003000400000000";
constexpr char kStunTest1Response[] =
    "0101000c016dee4662f0f0445432e8225068e810000100080001557f7f000001";  // 127.0.0.1:21887
constexpr char kStunTest2Request[] = "00010008027cbf500277412329589e6320c13f780003000400000004";
constexpr char kStunTest2Response[] =
    "0101000c027cbf500277412329589e6320c13f7800010008000155807f000001";  // 127.0.0.1:21888

sockaddr_storage ipv4(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET, ip, &sin->sin_addr), 1) << ip;
  return ss;
}

sockaddr_storage ipv6(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1) << ip;
  return ss;
}

const sockaddr* sa(const sockaddr_storage& ss) { return reinterpret_cast<const sockaddr*>(&ss); }

BindingRequest parseOk(const std::vector<uint8_t>& datagram) {
  auto parsed = parseBindingRequest(datagram);
  if (auto* reason = std::get_if<DropReason>(&parsed)) {
    ADD_FAILURE() << "dropped as " << dropReasonName(*reason) << ": " << hex(datagram);
    return {};
  }
  return std::get<BindingRequest>(parsed);
}

std::string respond(const BindingRequest& req, const sockaddr_storage& from) {
  std::array<uint8_t, kMaxResponseLen> out;
  const size_t n = buildBindingResponse(req, sa(from), out);
  return hex(std::span<const uint8_t>(out.data(), n));
}

// A bitwise CRC-32 (IEEE), independent of the codec's table, to build
// requests with valid fingerprints.
uint32_t referenceCrc32(std::span<const uint8_t> bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t b : bytes) {
    c ^= b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
  }
  return ~c;
}

// Header (type 0x0001, cookie, txid 01..0c) + attrs, length fixed up; with
// `fingerprint`, a valid FINGERPRINT is inserted `trailing` bytes before the end.
std::vector<uint8_t> request(const std::string& attrsHex, bool fingerprint = false,
                             const std::string& trailingHex = "") {
  std::vector<uint8_t> msg = unhex("000100002112a4420102030405060708090a0b0c" + attrsHex);
  const std::vector<uint8_t> trailing = unhex(trailingHex);
  const size_t total = msg.size() + (fingerprint ? 8 : 0) + trailing.size();
  msg[2] = static_cast<uint8_t>((total - kHeaderLen) >> 8);
  msg[3] = static_cast<uint8_t>(total - kHeaderLen);
  if (fingerprint) {
    const uint32_t fp = referenceCrc32(msg) ^ 0x5354554e;
    for (uint8_t b : {0x80, 0x28, 0x00, 0x04}) msg.push_back(b);
    for (int shift = 24; shift >= 0; shift -= 8) msg.push_back(static_cast<uint8_t>(fp >> shift));
  }
  msg.insert(msg.end(), trailing.begin(), trailing.end());
  return msg;
}

TEST(StunTest, ParsesTailscaleRequest) {
  const auto doc = loadVectors("stun.json");
  const auto entry = findEntry(doc, "binding_request");
  const BindingRequest req = parseOk(entryBytes(entry));
  EXPECT_FALSE(req.classic);
  EXPECT_TRUE(req.hasSoftware);
  EXPECT_TRUE(req.hasFingerprint);
  EXPECT_EQ(hex(std::span(req.id).first(4)), "2112a442");
  EXPECT_EQ(hex(std::span(req.id).subspan(4)), entry.at("parse_binding_request_txid_hex"));
}

TEST(StunTest, AcceptsRequestWithoutFingerprint) {
  const auto doc = loadVectors("stun.json");
  const BindingRequest req = parseOk(entryBytes(findEntry(doc, "request_without_fingerprint")));
  EXPECT_FALSE(req.classic);
  EXPECT_TRUE(req.hasSoftware);
  EXPECT_FALSE(req.hasFingerprint);
  EXPECT_EQ(hex(std::span(req.id).subspan(4)), "0102030405060708090a0b0c");
}

TEST(StunTest, IgnoresOtherMethodFromVectors) {
  const auto doc = loadVectors("stun.json");
  const auto parsed = parseBindingRequest(entryBytes(findEntry(doc, "not_binding_request")));
  ASSERT_TRUE(std::holds_alternative<DropReason>(parsed));
  EXPECT_EQ(std::get<DropReason>(parsed), DropReason::kNotBindingRequest);
}

TEST(StunTest, ReproducesDerperResponses) {
  const auto doc = loadVectors("stun.json");
  const BindingRequest req = parseOk(entryBytes(findEntry(doc, "binding_request")));
  EXPECT_EQ(respond(req, ipv4("1.2.3.4", 5678)), findEntry(doc, "binding_response_ipv4").at("hex"));
  EXPECT_EQ(respond(req, ipv6("2001:db8::1", 5678)),
            findEntry(doc, "binding_response_ipv6").at("hex"));
  // Its description: sent from 127.0.0.1:60205.
  EXPECT_EQ(respond(req, ipv4("127.0.0.1", 60205)),
            findEntry(doc, "captured_derper_response").at("hex"));
}

TEST(StunTest, AnswersIpv4MappedSenderAsIpv4) {
  const auto doc = loadVectors("stun.json");
  const BindingRequest req = parseOk(entryBytes(findEntry(doc, "binding_request")));
  EXPECT_EQ(respond(req, ipv6("::ffff:1.2.3.4", 5678)),
            findEntry(doc, "binding_response_ipv4").at("hex"));
}

TEST(StunTest, AnswersTurnutilsStunclient) {
  const BindingRequest req = parseOk(unhex(kTurnutilsRequest));
  EXPECT_FALSE(req.classic);
  EXPECT_FALSE(req.hasSoftware);
  EXPECT_FALSE(req.hasFingerprint);
  EXPECT_EQ(respond(req, ipv4("127.0.0.1", 50948)), kTurnutilsResponse);
  EXPECT_EQ(respond(parseOk(unhex(kTurnutilsRequestV6)), ipv6("::1", 53692)), kTurnutilsResponseV6);
}

TEST(StunTest, AnswersClassicStunClientWithMappedAddress) {
  const BindingRequest test1 = parseOk(unhex(kStunTest1Request));
  EXPECT_TRUE(test1.classic);
  EXPECT_FALSE(test1.hasSoftware);
  EXPECT_FALSE(test1.hasFingerprint);
  EXPECT_EQ(hex(test1.id), "016dee4662f0f0445432e8225068e810");
  EXPECT_EQ(respond(test1, ipv4("127.0.0.1", 21887)), kStunTest1Response);
  // CHANGE-REQUEST cannot be honoured by a one-address server and is ignored.
  EXPECT_EQ(respond(parseOk(unhex(kStunTest2Request)), ipv4("127.0.0.1", 21888)),
            kStunTest2Response);
}

TEST(StunTest, ClassicIpv6AnswerIsPlainMappedAddress) {
  const BindingRequest req = parseOk(unhex(kStunTest1Request));
  EXPECT_EQ(respond(req, ipv6("2001:db8::1", 5678)),
            "01010018016dee4662f0f0445432e8225068e810"
            "000100140002162e20010db8000000000000000000000001");
}

TEST(StunTest, AcceptsPaddedAndUnknownAttributes) {
  // SOFTWARE "abcde" (5 bytes + 3 padding), an unknown optional attribute, then FINGERPRINT.
  const BindingRequest req = parseOk(request("802200056162636465000000c0570004deadbeef", true));
  EXPECT_TRUE(req.hasSoftware);
  EXPECT_TRUE(req.hasFingerprint);
  EXPECT_FALSE(parseOk(request("")).hasFingerprint);
}

TEST(StunTest, DropReasons) {
  const auto doc = loadVectors("stun.json");
  const std::vector<uint8_t> tailscale = entryBytes(findEntry(doc, "binding_request"));
  auto mutated = [&](size_t offset, uint8_t value) {
    std::vector<uint8_t> bytes = tailscale;
    bytes.at(offset) = value;
    return bytes;
  };
  auto withType = [&](uint16_t type) {
    std::vector<uint8_t> bytes = tailscale;
    bytes.at(0) = static_cast<uint8_t>(type >> 8);
    bytes.at(1) = static_cast<uint8_t>(type);
    return bytes;
  };
  std::vector<uint8_t> truncatedBy4(tailscale.begin(), tailscale.end() - 4);
  const std::string get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::vector<uint8_t> httpGet(get.begin(), get.end());

  struct Case {
    const char* name;
    std::vector<uint8_t> datagram;
    DropReason want;
  };
  const Case cases[] = {
      {"empty", {}, DropReason::kTooShort},
      {"19 bytes", std::vector<uint8_t>(tailscale.begin(), tailscale.begin() + 19),
       DropReason::kTooShort},
      {"success response 0x0101", withType(0x0101), DropReason::kNotBindingRequest},
      {"indication 0x0011", withType(0x0011), DropReason::kNotBindingRequest},
      {"error response 0x0111", unhex("011100002112a4420102030405060708090a0b0c"),
       DropReason::kNotBindingRequest},
      {"top bits set", withType(0xc001), DropReason::kNotBindingRequest},
      {"http garbage", httpGet, DropReason::kNotBindingRequest},
      {"all ones", std::vector<uint8_t>(64, 0xff), DropReason::kNotBindingRequest},
      {"length too big", mutated(3, 0x18), DropReason::kBadLength},
      {"datagram truncated", truncatedBy4, DropReason::kBadLength},
      {"length not multiple of 4", unhex("000100022112a4420102030405060708090a0b0c8022"),
       DropReason::kBadLength},
      {"attribute value truncated", request("802200087461696c"), DropReason::kBadAttributes},
      {"attribute overruns message", request("802200207461696c6e6f6465"),
       DropReason::kBadAttributes},
      {"padding overruns message", request("8022000561626364"), DropReason::kBadAttributes},
      {"bad fingerprint value", mutated(tailscale.size() - 1, 0x00), DropReason::kBadFingerprint},
      {"software changed under fingerprint", mutated(24, 'T'), DropReason::kBadFingerprint},
      {"fingerprint not last", request("", true, "802200087461696c6e6f6465"),
       DropReason::kBadFingerprint},
      {"fingerprint of 8 bytes", request("802800080000000000000000"), DropReason::kBadFingerprint},
      {"tailscale request without cookie", mutated(4, 0x22), DropReason::kBadCookie},
  };
  for (const Case& c : cases) {
    const auto parsed = parseBindingRequest(c.datagram);
    ASSERT_TRUE(std::holds_alternative<DropReason>(parsed)) << c.name;
    EXPECT_EQ(std::get<DropReason>(parsed), c.want)
        << c.name << ": got " << dropReasonName(std::get<DropReason>(parsed));
  }
}

TEST(StunTest, ShortBufferOrUnknownFamilyWritesNothing) {
  const BindingRequest req = parseOk(unhex(kTurnutilsRequest));
  std::array<uint8_t, kMaxResponseLen> out;
  const auto v4 = ipv4("1.2.3.4", 5678);
  const auto v6 = ipv6("2001:db8::1", 5678);
  EXPECT_EQ(buildBindingResponse(req, sa(v4), std::span(out).first(31)), 0u);
  EXPECT_EQ(buildBindingResponse(req, sa(v4), std::span(out).first(32)), 32u);
  EXPECT_EQ(buildBindingResponse(req, sa(v6), std::span(out).first(43)), 0u);
  EXPECT_EQ(buildBindingResponse(req, sa(v6), out), 44u);
  EXPECT_EQ(buildBindingResponse(req, sa(v6), {}), 0u);

  sockaddr_storage unix{};
  unix.ss_family = AF_UNIX;
  EXPECT_EQ(buildBindingResponse(req, sa(unix), out), 0u);
  EXPECT_EQ(buildBindingResponse(req, nullptr, out), 0u);
}

TEST(StunTest, DropReasonNames) {
  EXPECT_STREQ(dropReasonName(DropReason::kTooShort), "too_short");
  EXPECT_STREQ(dropReasonName(DropReason::kNotBindingRequest), "not_binding_request");
  EXPECT_STREQ(dropReasonName(DropReason::kBadLength), "bad_length");
  EXPECT_STREQ(dropReasonName(DropReason::kBadCookie), "bad_cookie");
  EXPECT_STREQ(dropReasonName(DropReason::kBadAttributes), "bad_attributes");
  EXPECT_STREQ(dropReasonName(DropReason::kBadFingerprint), "bad_fingerprint");
}

}  // namespace
}  // namespace derpd::stun
