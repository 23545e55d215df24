// BootstrapResolver: resolves -bootstrap-dns-names and
// -unpublished-bootstrap-dns-names with getaddrinfo (and the TXT records of
// name/txtname rollouts with libresolv) on a thread of its own (never on a
// shard), at once and then every few minutes, and publishes each round's
// answers as a new snapshot in a BootstrapDnsStore that the shards read. A
// name that fails keeps its last answer. Created, started and
// destroyed by the main thread.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "http/bootstrap_dns.h"

namespace derpd {

class BootstrapResolver {
 public:
  BootstrapResolver(std::vector<std::string> published, std::vector<std::string> unpublished,
                    http::BootstrapDnsStore& store, Nanos interval = 5 * 60 * kSecond);
  ~BootstrapResolver();  // stops and joins (a lookup in progress finishes first)

  void start();

 private:
  void run();
  void resolveAll();

  const std::vector<std::string> published_;
  const std::vector<std::string> unpublished_;
  http::BootstrapDnsStore& store_;
  const Nanos interval_;
  std::vector<http::RolloutAnswer> lastPublished_;  // resolver thread only
  std::vector<http::RolloutAnswer> lastUnpublished_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace derpd
