#include "verify/client_verifier.h"

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "client/http_fetch.h"
#include "verify/verdicts.h"

namespace derpd::verify {

ClientVerifier::ClientVerifier(VerifierOptions options, Sink sink)
    : opts_(std::move(options)), sink_(std::move(sink)) {}

ClientVerifier::~ClientVerifier() { stop(); }

void ClientVerifier::start() {
  for (size_t i = 0; i < opts_.threads; i++) threads_.emplace_back([this] { run(); });
}

void ClientVerifier::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

std::optional<relay::Verdict> ClientVerifier::check(const relay::CheckRequest& request) {
  // Without an admission URL the answer does not depend on the address.
  Key key{request.key, opts_.url.empty() ? std::array<uint8_t, 16>{} : request.ip};
  const Nanos now = clock_.now();
  std::lock_guard lock(mu_);
  if (stopping_) return relay::Verdict{false, relay::RejectReason::kBusy, "shutting down"};
  for (auto* cache : {&admits_, &rejects_}) {
    auto it = cache->find(key);
    if (it == cache->end()) continue;
    if (it->second.expires > now) {
      return it->second.verdict;
    }
    cache->erase(it);
  }
  auto waiting = waiting_.find(key);
  if (waiting != waiting_.end()) {
    waiting->second.push_back(request);
    return std::nullopt;
  }
  if (queue_.size() >= opts_.maxQueued) {
    return relay::Verdict{false, relay::RejectReason::kBusy,
                          absl::StrCat(queue_.size(), " clients already wait for verification")};
  }
  waiting_[key].push_back(request);
  queue_.push_back(key);
  wake_.notify_one();
  return std::nullopt;
}

void ClientVerifier::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    Key key = queue_.front();
    queue_.pop_front();
    lock.unlock();
    Asked asked = ask(key);
    lock.lock();
    if (asked.cacheable) remember(key, asked.verdict);
    auto node = waiting_.extract(key);
    if (node.empty()) continue;
    lock.unlock();
    for (const relay::CheckRequest& r : node.mapped()) sink_(r, asked.verdict);
    lock.lock();
  }
}

bool ClientVerifier::down(Nanos until) const { return until > clock_.now(); }

// tailscaled first, then the URL, as derper: both must admit.
ClientVerifier::Asked ClientVerifier::ask(const Key& key) {
  Asked result{relay::Verdict{true, {}, "admitted"}, true};
  if (!opts_.tailscaledSocket.empty()) {
    result = askTailscaled(key.first);
    if (!result.verdict.admit) return result;
  }
  if (!opts_.url.empty()) {
    Asked url = askUrl(key.first, key.second);
    if (!url.verdict.admit || !url.cacheable) return url;
    result.verdict.detail = url.verdict.detail;
  }
  return result;
}

ClientVerifier::Asked ClientVerifier::askTailscaled(const derp::NodeKey& key) {
  {
    std::lock_guard lock(mu_);
    if (down(tailscaledDownUntil_)) {
      return {relay::Verdict{false, relay::RejectReason::kTailscaledError, tailscaledDownDetail_},
              false};
    }
  }
  absl::StatusOr<client::HttpResponse> r =
      client::fetch(whoisRequest(key, opts_.tailscaledSocket, opts_.timeout));
  relay::Verdict v = whoisVerdict(r);
  std::lock_guard lock(mu_);
  if (!r.ok()) {
    tailscaledDownUntil_ = clock_.now() + opts_.downFor;
    tailscaledDownDetail_ = v.detail;
    return {v, false};
  }
  if (v.reason == relay::RejectReason::kTailscaledTooOld && !v.admit && !tooOldLogged_) {
    tooOldLogged_ = true;
    logError(
        "tailscaled too old for -verify-clients: it has no WhoIs by node key (every client "
        "is rejected until it is upgraded)");
  }
  return {v, r->status == 200 || r->status == 404};
}

ClientVerifier::Asked ClientVerifier::askUrl(const derp::NodeKey& key,
                                             const std::array<uint8_t, 16>& ip) {
  {
    std::lock_guard lock(mu_);
    if (down(urlDownUntil_)) {
      return {admissionVerdict(absl::UnavailableError(urlDownDetail_), opts_.failOpen), false};
    }
  }
  absl::StatusOr<client::HttpResponse> r =
      client::fetch(admissionRequest(opts_.url, key, ip, opts_.timeout));
  relay::Verdict v = admissionVerdict(r, opts_.failOpen);
  if (!r.ok()) {
    std::lock_guard lock(mu_);
    urlDownUntil_ = clock_.now() + opts_.downFor;
    urlDownDetail_ = absl::StrCat(r.status().message(), " (not asked again for a moment)");
    return {v, false};
  }
  return {v, true};
}

void ClientVerifier::remember(const Key& key, const relay::Verdict& v) {
  auto& cache = v.admit ? admits_ : rejects_;
  const Nanos now = clock_.now();
  if (cache.size() >= opts_.maxCached) {
    absl::erase_if(cache, [now](const auto& e) { return e.second.expires <= now; });
    if (cache.size() >= opts_.maxCached) cache.clear();
  }
  cache[key] = Cached{v, now + (v.admit ? opts_.admitTtl : opts_.rejectTtl)};
}

}  // namespace derpd::verify
