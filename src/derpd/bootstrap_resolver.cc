#include "derpd/bootstrap_resolver.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "base/log.h"

namespace derpd {
namespace {

// Every address of name, v4 and v6, as text, without duplicates; empty on
// failure (logged).
std::vector<std::string> lookup(const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;  // one entry per address, not one per socket type
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &res);
  std::vector<std::string> ips;
  if (rc != 0) {
    logWarn("bootstrap DNS lookup %s: %s", name, gai_strerror(rc));
    return ips;
  }
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    if (ai->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, text,
                sizeof(text));
    } else if (ai->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, text,
                sizeof(text));
    } else {
      continue;
    }
    if (std::find(ips.begin(), ips.end(), text) == ips.end()) ips.emplace_back(text);
  }
  ::freeaddrinfo(res);
  return ips;
}

// Resolves names; one that fails keeps its entry from `last`, if any.
std::vector<http::DnsAnswer> resolveNames(const std::vector<std::string>& names,
                                          const std::vector<http::DnsAnswer>& last,
                                          std::minstd_rand& rng) {
  std::vector<http::DnsAnswer> answers;
  for (const std::string& name : names) {
    std::vector<std::string> ips = lookup(name);
    if (ips.empty()) {
      auto old = std::find_if(last.begin(), last.end(),
                              [&](const http::DnsAnswer& a) { return a.first == name; });
      if (old != last.end()) answers.push_back(*old);
      continue;
    }
    // Like derper: shuffled each round so clients do not all favour one
    // address (or family).
    std::shuffle(ips.begin(), ips.end(), rng);
    answers.emplace_back(name, std::move(ips));
  }
  return answers;
}

}  // namespace

BootstrapResolver::BootstrapResolver(std::vector<std::string> published,
                                     std::vector<std::string> unpublished,
                                     http::BootstrapDnsStore& store, Nanos interval)
    : published_(std::move(published)),
      unpublished_(std::move(unpublished)),
      store_(store),
      interval_(interval) {}

BootstrapResolver::~BootstrapResolver() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BootstrapResolver::start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "derpd-dns");
    run();
  });
}

void BootstrapResolver::run() {
  for (;;) {
    resolveAll();
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, std::chrono::nanoseconds(interval_), [this] { return stop_; })) return;
  }
}

void BootstrapResolver::resolveAll() {
  static thread_local std::minstd_rand rng(std::random_device{}());
  lastPublished_ = resolveNames(published_, lastPublished_, rng);
  lastUnpublished_ = resolveNames(unpublished_, lastUnpublished_, rng);
  store_.publish(std::make_shared<const http::BootstrapDnsSnapshot>(
      http::BootstrapDnsSnapshot::build(lastPublished_, lastUnpublished_)));
}

}  // namespace derpd
