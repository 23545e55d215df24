// The STUN codec: parses a Binding Request datagram and writes the Binding
// Success Response that tells the sender its address as derpd sees it. Pure
// functions over caller-owned bytes (no I/O, no allocation, no state), so any
// thread may call them; the UDP server calls them once per datagram.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <variant>

namespace derpd::stun {

constexpr size_t kHeaderLen = 20;
constexpr uint32_t kMagicCookie = 0x2112A442;
// The largest response buildBindingResponse writes (header + an IPv6 mapped
// address); a buffer this big never makes it return 0.
constexpr size_t kMaxResponseLen = 44;

// Why a datagram got no answer. Every value is counted separately, so the
// order is fixed and kCount is the number of reasons.
enum class DropReason : uint8_t {
  kTooShort,           // under the 20-byte header
  kNotBindingRequest,  // another STUN method or class, or not STUN at all
  kBadLength,          // header length disagrees with the datagram or is not 4-aligned
  kBadCookie,          // RFC 5389-only FINGERPRINT without the magic cookie
  kBadAttributes,      // attributes do not exactly fill the message
  kBadFingerprint,     // FINGERPRINT wrong or not last
  kCount,
};

// Snake_case name of a reason ("too_short", ...) for metric labels; a static string.
const char* dropReasonName(DropReason reason);

struct BindingRequest {
  // RFC 5389: magic cookie (4) + transaction id (12), as on the wire.
  // RFC 3489 (classic): the 16-byte transaction id.
  std::array<uint8_t, 16> id;
  bool classic;  // RFC 3489 request: no magic cookie, answered with MAPPED-ADDRESS
  bool hasSoftware;
  bool hasFingerprint;
};

// Parses one whole datagram: the request, or why it is to be ignored.
std::variant<BindingRequest, DropReason> parseBindingRequest(std::span<const uint8_t> datagram);

// Writes the Binding Success Response to `req` for the sender `from` (a
// sockaddr_in or sockaddr_in6; IPv4-mapped IPv6 is answered as IPv4) into out.
// Returns the response length, or 0 when out is shorter than that or `from`
// is of another family. The response carries only the mapped address
// (XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS for classic requests): 32 bytes for
// IPv4, 44 for IPv6.
size_t buildBindingResponse(const BindingRequest& req, const sockaddr* from,
                            std::span<uint8_t> out);

}  // namespace derpd::stun
