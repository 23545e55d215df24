// SocketAddress: an IPv4 or IPv6 address and port, parsed from derper-style
// "-a" values (":443", "127.0.0.1:3340", "[::1]:0", "host:port").
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace derpd::net {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  uint16_t port() const;
  void setPort(uint16_t port);
  bool isLoopback() const;
  // "127.0.0.1:80" or "[::1]:80".
  std::string toString() const;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }

  static SocketAddress fromSockaddr(const sockaddr* sa, socklen_t len);
};

// An address as the relay keeps it (IPv4 mapped into IPv6), as text:
// "192.0.2.1" for a mapped IPv4 address, "2001:db8::1" otherwise.
std::string formatIp(const std::array<uint8_t, 16>& ip);

// Parses "host:port", "[v6]:port" or ":port" (all addresses, IPv6 dual-stack).
// The host must be an IP literal or "localhost"; names are not resolved.
absl::StatusOr<SocketAddress> parseListenAddress(absl::string_view text);

}  // namespace derpd::net
