// ClientVerifier: derpd's ClientChecker (relay/client_check.h). Shards ask it
// about clients whose ClientInfo they have opened; it answers from a cache at
// once, or asks tailscaled and/or the admission URL on its own threads and
// posts the answer back to the shard through the sink (Server::postVerdict).
//
// - Answers are cached per client key (and source address, when an admission
//   URL is asked): admits for admitTtl, rejections for rejectTtl, at most
//   maxCached of each; a fail-open admit is not cached.
// - Clients asking about the same key while it is being asked wait for that
//   one answer: a reconnect storm costs one request per key.
// - After a transport failure (refused, timeout) the same service is not
//   asked again for downFor: the answers are what the failure gave (fail open
//   admits, fail closed rejects) without waiting on it for each client.
// - At most maxQueued keys wait for a thread; beyond that a client is
//   rejected at once (verifier_busy).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "base/clock.h"
#include "relay/client_check.h"

namespace derpd::verify {

struct VerifierOptions {
  std::string tailscaledSocket;  // -verify-clients: this LocalAPI socket (empty: not asked)
  std::string url;               // -verify-client-url (empty: not asked)
  bool failOpen = true;          // -verify-client-url-fail-open
  Nanos timeout = 5 * kSecond;   // each request, as derper's admission request
  Nanos admitTtl = 30 * kSecond;
  Nanos rejectTtl = 5 * kSecond;
  Nanos downFor = 2 * kSecond;
  size_t maxCached = 65536;
  size_t maxQueued = 4096;
  size_t threads = 8;
};

class ClientVerifier final : public relay::ClientChecker {
 public:
  using Sink = std::function<void(const relay::CheckRequest&, relay::Verdict)>;

  ClientVerifier(VerifierOptions options, Sink sink);
  ~ClientVerifier() override;

  // Starts the threads. stop() joins them; later checks are rejected.
  void start();
  void stop();

  std::optional<relay::Verdict> check(const relay::CheckRequest& request) override;

 private:
  using Key = std::pair<derp::NodeKey, std::array<uint8_t, 16>>;
  struct Cached {
    relay::Verdict verdict;
    Nanos expires = 0;
  };
  struct Asked {
    relay::Verdict verdict;
    bool cacheable = true;
  };

  void run();
  Asked ask(const Key& key);
  Asked askTailscaled(const derp::NodeKey& key);
  Asked askUrl(const derp::NodeKey& key, const std::array<uint8_t, 16>& ip);
  void remember(const Key& key, const relay::Verdict& v);
  bool down(Nanos until) const;

  VerifierOptions opts_;
  Sink sink_;
  RealClock clock_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::deque<Key> queue_;
  absl::flat_hash_map<Key, std::vector<relay::CheckRequest>> waiting_;
  absl::flat_hash_map<Key, Cached> admits_;
  absl::flat_hash_map<Key, Cached> rejects_;
  Nanos tailscaledDownUntil_ = 0;
  Nanos urlDownUntil_ = 0;
  std::string tailscaledDownDetail_;
  std::string urlDownDetail_;
  bool tooOldLogged_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace derpd::verify
