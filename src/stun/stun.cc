// What real clients send and accept (observed on Debian 12 against a hand-made
// responder on 127.0.0.1; this is why both request flavours are answered and
// why the attribute type follows the request):
//
// - Tailscale (tests/vectors/stun.json): 40-byte RFC 5389 request, magic
//   cookie, SOFTWARE "tailnode", FINGERPRINT last. Reads XOR-MAPPED-ADDRESS.
//
// - coturn's `turnutils_stunclient -p PORT 127.0.0.1` (also with ::1, and with
//   -f before its RFC 5780 follow-ups): one 20-byte RFC 5389 request, type
//   0x0001, length 0, magic cookie, random 12-byte transaction id, no
//   attributes, e.g. 000100002112a442b441cb228e363d0ac80938f7. It reads only
//   XOR-MAPPED-ADDRESS (0x0020): with it, it prints
//   "0: : IPv4. UDP reflexive addr: 127.0.0.1:50948" (IPv6: "... IPv6. UDP
//   reflexive addr: ::1:53692") and exits 0; with only MAPPED-ADDRESS it prints
//   "Cannot read the response". Unanswered, it sent nothing more and was still
//   waiting after 3 s.
//
// - stun-client 0.97's `stun 127.0.0.1:PORT`: classic RFC 3489 requests of 28
//   bytes, type 0x0001, length 8, a 16-byte id with NO magic cookie (its first
//   byte is the test number 01/02/03, the rest random), then CHANGE-REQUEST
//   (0x0003, length 4) with flags 0, 4 (change IP) or 2 (change port), e.g.
//   00010008015abe6c11f7e835be50f40be002c00c0003000400000000. Test 1 comes from
//   one local port, tests 2 and 3 from the next port; unanswered ones are
//   resent (7 rounds in 3 s). It reads MAPPED-ADDRESS (0x0001): with it, `-v` shows
//   "MappedAddress = 127.0.0.1:21887" and it runs its hairpin test (a request
//   to its own mapped address). It recognises 0x0020 but decodes it as
//   "XorMappedAddress = 0.0.0.0:0", so classic requests are answered with
//   MAPPED-ADDRESS. It prints "Primary: Open" when every test is answered (its
//   exit status is a bit set of findings, 1 here, not a success flag) and
//   "Primary: Firewall" when the change requests are not. A server with one
//   address cannot honour CHANGE-REQUEST; it is ignored like any other
//   attribute, so `stun` gets its mapped address quickly, but its NAT type
//   verdict is meaningless against derpd (as against any one-address server).
//
// Amplification: the response is the header plus the mapped address and
// nothing else (no SOFTWARE, FINGERPRINT or other echo of the request), so it
// is at most kMaxResponseLen (44) bytes whatever the request held. A literal
// "never larger than the request" would refuse turnutils' 20-byte and stun's
// 28-byte requests (32-byte IPv4 answers) and Tailscale's own 40-byte request
// over IPv6 (44-byte answer); derper answers the same way. The gain is at most
// 24 bytes per datagram (20-byte request, 44-byte IPv6 answer): no useful amplifier.
//
// CRC-32 is a 1 KiB constexpr table here rather than zlib: the fingerprint
// covers under a hundred bytes per request, so the table is as fast as it needs
// to be, and the codec stays free of external dependencies.
#include "stun/stun.h"

#include <netinet/in.h>

#include <cstring>

namespace derpd::stun {
namespace {

constexpr uint16_t kBindingRequest = 0x0001;
constexpr uint16_t kBindingSuccess = 0x0101;
constexpr uint16_t kAttrMappedAddress = 0x0001;
constexpr uint16_t kAttrXorMappedAddress = 0x0020;
constexpr uint16_t kAttrSoftware = 0x8022;
constexpr uint16_t kAttrFingerprint = 0x8028;
constexpr uint32_t kFingerprintXor = 0x5354554e;
constexpr size_t kAttrHeaderLen = 4;
constexpr size_t kFingerprintAttrLen = kAttrHeaderLen + 4;
constexpr size_t kAddressValueHeaderLen = 4;  // reserved, family, port
constexpr uint8_t kFamilyIpv4 = 0x01;
constexpr uint8_t kFamilyIpv6 = 0x02;

constexpr const char* kDropReasonNames[] = {
    "too_short",  "not_binding_request", "bad_length",
    "bad_cookie", "bad_attributes",      "bad_fingerprint",
};
static_assert(std::size(kDropReasonNames) == static_cast<size_t>(DropReason::kCount));

// The reflected IEEE polynomial zlib's crc32() uses.
constexpr std::array<uint32_t, 256> makeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = makeCrcTable();

uint32_t crc32(std::span<const uint8_t> bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t b : bytes) c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

uint32_t load32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

void store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

}  // namespace

const char* dropReasonName(DropReason reason) {
  const auto i = static_cast<size_t>(reason);
  return i < std::size(kDropReasonNames) ? kDropReasonNames[i] : "unknown";
}

std::variant<BindingRequest, DropReason> parseBindingRequest(std::span<const uint8_t> datagram) {
  if (datagram.size() < kHeaderLen) return DropReason::kTooShort;
  const uint8_t* bytes = datagram.data();
  // Exact match also rejects anything whose top two bits are set (RTP, DTLS,
  // ...), which RFC 5389 uses to tell STUN from other traffic on a port.
  if (load16(bytes) != kBindingRequest) return DropReason::kNotBindingRequest;
  const size_t messageLen = load16(bytes + 2);
  if (messageLen != datagram.size() - kHeaderLen || messageLen % 4 != 0) {
    return DropReason::kBadLength;
  }

  BindingRequest req{};
  std::memcpy(req.id.data(), bytes + 4, req.id.size());
  req.classic = load32(bytes + 4) != kMagicCookie;

  size_t pos = kHeaderLen;
  while (pos < datagram.size()) {
    const size_t left = datagram.size() - pos;
    if (left < kAttrHeaderLen) return DropReason::kBadAttributes;
    const uint16_t type = load16(bytes + pos);
    const size_t valueLen = load16(bytes + pos + 2);
    const size_t paddedLen = (valueLen + 3) & ~size_t{3};
    if (paddedLen > left - kAttrHeaderLen) return DropReason::kBadAttributes;

    if (type == kAttrFingerprint) {
      // FINGERPRINT exists only in RFC 5389, so its sender meant to send the
      // cookie: this is a damaged modern request, not a classic one.
      if (req.classic) return DropReason::kBadCookie;
      if (valueLen != 4 || left != kFingerprintAttrLen) return DropReason::kBadFingerprint;
      const uint32_t expected = crc32(datagram.first(pos)) ^ kFingerprintXor;
      if (load32(bytes + pos + kAttrHeaderLen) != expected) return DropReason::kBadFingerprint;
      req.hasFingerprint = true;
    } else if (type == kAttrSoftware) {
      req.hasSoftware = true;
    }
    pos += kAttrHeaderLen + paddedLen;
  }
  return req;
}

size_t buildBindingResponse(const BindingRequest& req, const sockaddr* from,
                            std::span<uint8_t> out) {
  if (from == nullptr) return 0;
  // Copies rather than casts: `from` usually points into a sockaddr_storage.
  uint8_t address[16];
  size_t addressLen;
  uint16_t port;
  if (from->sa_family == AF_INET) {
    sockaddr_in sin;
    std::memcpy(&sin, from, sizeof(sin));
    addressLen = 4;
    std::memcpy(address, &sin.sin_addr, addressLen);
    port = ntohs(sin.sin_port);
  } else if (from->sa_family == AF_INET6) {
    sockaddr_in6 sin6;
    std::memcpy(&sin6, from, sizeof(sin6));
    // A dual-stack socket reports IPv4 senders as ::ffff:a.b.c.d; they asked
    // over IPv4 and expect an IPv4 answer.
    if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
      addressLen = 4;
      std::memcpy(address, sin6.sin6_addr.s6_addr + 12, addressLen);
    } else {
      addressLen = 16;
      std::memcpy(address, sin6.sin6_addr.s6_addr, addressLen);
    }
    port = ntohs(sin6.sin6_port);
  } else {
    return 0;
  }

  const size_t valueLen = kAddressValueHeaderLen + addressLen;
  const size_t total = kHeaderLen + kAttrHeaderLen + valueLen;
  if (out.size() < total) return 0;

  uint8_t* p = out.data();
  store16(p, kBindingSuccess);
  store16(p + 2, static_cast<uint16_t>(total - kHeaderLen));
  std::memcpy(p + 4, req.id.data(), req.id.size());
  p += kHeaderLen;
  store16(p, req.classic ? kAttrMappedAddress : kAttrXorMappedAddress);
  store16(p + 2, static_cast<uint16_t>(valueLen));
  p[4] = 0;
  p[5] = addressLen == 4 ? kFamilyIpv4 : kFamilyIpv6;
  if (req.classic) {
    store16(p + 6, port);
    std::memcpy(p + 8, address, addressLen);
  } else {
    // XOR-MAPPED-ADDRESS: the port with the cookie's top half, the address
    // with cookie + transaction id, which is exactly the start of req.id.
    store16(p + 6, static_cast<uint16_t>(port ^ (kMagicCookie >> 16)));
    for (size_t i = 0; i < addressLen; ++i) p[8 + i] = address[i] ^ req.id[i];
  }
  return total;
}

}  // namespace derpd::stun
