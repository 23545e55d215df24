#include "derpd/bootstrap_resolver.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <resolv.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "base/log.h"
#include "http/rollout.h"

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

struct TxtAnswer {
  enum class Result { kFound, kAbsent, kFailed } result;
  std::vector<std::string> values;  // one per TXT record, its strings joined (as Go's LookupTXT)
  std::string error;
};

// name's TXT records through the system's resolver (resolv.conf), with a
// resolver state of this call's own (res_n*: thread-safe). kAbsent: the name
// or its TXT records do not exist, which the DNS says for sure; kFailed: no
// usable answer (timeout, SERVFAIL, a malformed reply).
TxtAnswer lookupTxt(const std::string& name) {
  struct __res_state state {};
  if (::res_ninit(&state) != 0) return {TxtAnswer::Result::kFailed, {}, "res_ninit failed"};
  std::vector<unsigned char> reply(65535);
  const int len = ::res_nquery(&state, name.c_str(), ns_c_in, ns_t_txt, reply.data(),
                               static_cast<int>(reply.size()));
  const int herr = state.res_h_errno;
  ::res_nclose(&state);
  if (len < 0) {
    if (herr == HOST_NOT_FOUND || herr == NO_DATA) {
      return {TxtAnswer::Result::kAbsent, {}, ::hstrerror(herr)};
    }
    return {TxtAnswer::Result::kFailed, {}, ::hstrerror(herr)};
  }
  ns_msg msg;
  if (::ns_initparse(reply.data(), std::min<int>(len, static_cast<int>(reply.size())), &msg) < 0) {
    return {TxtAnswer::Result::kFailed, {}, "malformed DNS reply"};
  }
  TxtAnswer out{TxtAnswer::Result::kFound, {}, {}};
  for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
    ns_rr rr;
    if (::ns_parserr(&msg, ns_s_an, i, &rr) < 0) {
      return {TxtAnswer::Result::kFailed, {}, "malformed DNS reply"};
    }
    if (ns_rr_type(rr) != ns_t_txt) continue;  // a CNAME on the way
    const unsigned char* p = ns_rr_rdata(rr);
    const unsigned char* end = p + ns_rr_rdlen(rr);
    std::string value;
    while (p < end) {  // <character-string>s: a length byte, then that many bytes
      const size_t n = *p++;
      if (n > static_cast<size_t>(end - p)) {
        return {TxtAnswer::Result::kFailed, {}, "malformed TXT record"};
      }
      value.append(reinterpret_cast<const char*>(p), n);
      p += n;
    }
    out.values.push_back(std::move(value));
  }
  if (out.values.empty()) return {TxtAnswer::Result::kAbsent, {}, "no TXT record"};
  return out;
}

// The share of clients txtName's TXT record gives an unpublished name, as
// derper reads it: the last value that is a whole number 0..100, percent. No
// record, or no such value: 0 (the rollout has not started). A lookup that
// failed keeps `last` (a DNS outage does not end a rollout).
double rolloutShare(const std::string& name, const std::string& txtName, double last) {
  TxtAnswer txt = lookupTxt(txtName);
  if (txt.result == TxtAnswer::Result::kFailed) {
    if (last > 0) {
      logWarn("bootstrap DNS lookup %s (TXT): %s; %s keeps its share, %g%%", txtName, txt.error,
              name, last * 100);
    } else {
      logWarn("bootstrap DNS lookup %s (TXT): %s; %s is given to no client", txtName, txt.error,
              name);
    }
    return last;
  }
  if (txt.result == TxtAnswer::Result::kAbsent) {
    logWarn("bootstrap DNS lookup %s (TXT): %s; %s is given to no client", txtName, txt.error,
            name);
    return 0;
  }
  std::optional<double> share;
  for (const std::string& v : txt.values) {
    if (std::optional<double> s = http::rolloutShareFromTxt(v)) share = s;
  }
  if (!share) {
    logWarn("bootstrap DNS: %s's TXT record holds no percentage 0-100; %s is given to no client",
            txtName, name);
    return 0;
  }
  return *share;
}

// "name" or "name/txtname" (config checked the shape).
std::pair<std::string, std::string> splitEntry(const std::string& entry) {
  const size_t slash = entry.find('/');
  if (slash == std::string::npos) return {entry, ""};
  return {entry.substr(0, slash), entry.substr(slash + 1)};
}

// The last round's answer for name, if it had one.
const http::RolloutAnswer* find(const std::vector<http::RolloutAnswer>& last,
                                const std::string& name) {
  auto it = std::find_if(last.begin(), last.end(),
                         [&](const http::RolloutAnswer& a) { return a.answer.first == name; });
  return it == last.end() ? nullptr : &*it;
}

// Resolves entries; a name that fails keeps its answer from `last`, if any.
std::vector<http::RolloutAnswer> resolveEntries(const std::vector<std::string>& entries,
                                                const std::vector<http::RolloutAnswer>& last,
                                                bool rollouts, std::minstd_rand& rng) {
  std::vector<http::RolloutAnswer> answers;
  for (const std::string& entry : entries) {
    auto [name, txtName] = splitEntry(entry);
    const http::RolloutAnswer* old = find(last, name);
    std::vector<std::string> ips = lookup(name);
    if (ips.empty()) {
      if (old != nullptr) answers.push_back(*old);
      continue;
    }
    // Like derper: shuffled each round so clients do not all favour one
    // address (or family).
    std::shuffle(ips.begin(), ips.end(), rng);
    double share = 1;
    if (rollouts && !txtName.empty()) {
      share = rolloutShare(name, txtName, old != nullptr ? old->share : 0);
      if (old == nullptr || old->share != share) {
        logInfo("bootstrap DNS: %s is given to %g%% of clients (TXT %s)", name, share * 100,
                txtName);
      }
    }
    answers.push_back({{std::move(name), std::move(ips)}, share});
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
  // Published names: derper accepts a /txtname there too, and ignores it.
  lastPublished_ = resolveEntries(published_, lastPublished_, false, rng);
  lastUnpublished_ = resolveEntries(unpublished_, lastUnpublished_, true, rng);
  std::vector<http::DnsAnswer> published;
  for (const http::RolloutAnswer& a : lastPublished_) published.push_back(a.answer);
  store_.publish(std::make_shared<const http::BootstrapDnsSnapshot>(
      http::BootstrapDnsSnapshot::build(published, lastUnpublished_)));
}

}  // namespace derpd
