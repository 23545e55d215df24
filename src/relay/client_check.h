// Who may connect (-verify-clients, -verify-client-url): the question a shard
// asks about a client whose ClientInfo it has opened, and the answer. The
// asking is ClientChecker's, implemented off the shards (src/verify); the
// shard holds the connection in its handshake until the answer comes back.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "derp/key.h"

namespace derpd::relay {

// Why a client was refused (derpd_clients_rejected_total{reason}).
enum class RejectReason : uint8_t {
  kNotInTailnet,      // tailscaled answered 404: not a node of this tailnet
  kTailscaledError,   // tailscaled could not be asked, or answered another error (fail closed)
  kTailscaledTooOld,  // tailscaled has no WhoIs by node key
  kUrlDenied,         // the admission URL said {"Allow": false}
  kUrlStatus,         // ... answered a status other than 200
  kUrlBadReply,       // ... answered 200 with a body that is not the JSON expected
  kUrlUnreachable,    // ... could not be asked, with -verify-client-url-fail-open=false
  kBusy,              // too many checks waiting already (fail closed)
  kCount,
};
const char* rejectReasonName(RejectReason r);

struct CheckRequest {
  derp::NodeKey key;
  std::array<uint8_t, 16> ip{};  // the client's address, IPv4 mapped into IPv6
  uint16_t shard = 0;
  uint32_t idx = 0;  // the connection on that shard
  uint32_t gen = 0;
};

struct Verdict {
  bool admit = false;
  RejectReason reason = RejectReason::kNotInTailnet;  // when !admit
  std::string detail;                                 // for the log line: what the checker was told
};

class ClientChecker {
 public:
  virtual ~ClientChecker() = default;
  // Shard thread. The answer now (a cached one), or nullopt: it will come
  // through the sink the checker was made with, from another thread.
  virtual std::optional<Verdict> check(const CheckRequest& request) = 0;
};

}  // namespace derpd::relay
