// libFuzzer target: parseBindingRequest over arbitrary datagrams and, when one
// is accepted, the response for an IPv4, an IPv6 and an IPv4-mapped sender.
// Checks invariants rather than outputs.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <variant>

#include "stun/stun.h"

namespace {

using derpd::stun::BindingRequest;
using derpd::stun::DropReason;

// A violated invariant must crash so that libFuzzer keeps the input.
void check(bool ok) {
  if (!ok) std::abort();
}

uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

// Decodes the single address attribute of a response and checks it names
// `address`/`port` (host order), undoing the XOR for modern requests.
void checkResponse(const BindingRequest& req, std::span<const uint8_t> resp,
                   std::span<const uint8_t> address, uint16_t port) {
  const size_t want = derpd::stun::kHeaderLen + 8 + address.size();
  check(resp.size() == want && resp.size() <= derpd::stun::kMaxResponseLen);
  check(load16(resp.data()) == 0x0101 && size_t{load16(resp.data() + 2)} == want - 20);
  check(std::memcmp(resp.data() + 4, req.id.data(), req.id.size()) == 0);
  const uint8_t* attr = resp.data() + 20;
  check(load16(attr) == (req.classic ? 0x0001 : 0x0020));
  check(size_t{load16(attr + 2)} == 4 + address.size());
  check(attr[4] == 0 && attr[5] == (address.size() == 4 ? 1 : 2));
  const uint16_t mask = req.classic ? 0 : 0x2112;
  check((load16(attr + 6) ^ mask) == port);
  for (size_t i = 0; i < address.size(); ++i) {
    check((attr[8 + i] ^ (req.classic ? 0 : req.id[i])) == address[i]);
  }
  // A response is never mistaken for a request (no reflection loops between servers).
  const auto reparsed = derpd::stun::parseBindingRequest(resp);
  check(std::holds_alternative<DropReason>(reparsed) &&
        std::get<DropReason>(reparsed) == DropReason::kNotBindingRequest);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> datagram(data, size);
  const auto parsed = derpd::stun::parseBindingRequest(datagram);
  if (const auto* reason = std::get_if<DropReason>(&parsed)) {
    check(*reason < DropReason::kCount);
    check(std::strcmp(derpd::stun::dropReasonName(*reason), "unknown") != 0);
    return 0;
  }

  const BindingRequest& req = std::get<BindingRequest>(parsed);
  check(size >= 20 && size % 4 == 0 && load16(data) == 0x0001);
  check(std::memcmp(req.id.data(), data + 4, req.id.size()) == 0);
  check(req.classic == (std::memcmp(data + 4, "\x21\x12\xa4\x42", 4) != 0));
  if (req.hasFingerprint) check(!req.classic && size >= 28 && load16(data + size - 8) == 0x8028);

  constexpr uint16_t kPort = 40000;
  const std::array<uint8_t, 4> v4 = {192, 0, 2, 7};
  const std::array<uint8_t, 16> v6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
  std::array<uint8_t, derpd::stun::kMaxResponseLen> out;

  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(kPort);
  std::memcpy(&sin.sin_addr, v4.data(), v4.size());
  size_t n = derpd::stun::buildBindingResponse(req, reinterpret_cast<const sockaddr*>(&sin), out);
  checkResponse(req, std::span(out).first(n), v4, kPort);

  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(kPort);
  std::memcpy(&sin6.sin6_addr, v6.data(), v6.size());
  n = derpd::stun::buildBindingResponse(req, reinterpret_cast<const sockaddr*>(&sin6), out);
  checkResponse(req, std::span(out).first(n), v6, kPort);

  // ::ffff:192.0.2.7 must come back as plain IPv4.
  std::memset(&sin6.sin6_addr, 0, sizeof(sin6.sin6_addr));
  sin6.sin6_addr.s6_addr[10] = 0xff;
  sin6.sin6_addr.s6_addr[11] = 0xff;
  std::memcpy(sin6.sin6_addr.s6_addr + 12, v4.data(), v4.size());
  n = derpd::stun::buildBindingResponse(req, reinterpret_cast<const sockaddr*>(&sin6), out);
  checkResponse(req, std::span(out).first(n), v4, kPort);
  return 0;
}
