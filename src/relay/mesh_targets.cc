#include "relay/mesh_targets.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/log.h"

namespace derpd::relay {
namespace {

// derper's key is 32 bytes, written as hex.
constexpr size_t kMeshKeyHexChars = 64;

// The address without the port: "10.0.0.1" or "fd00::1".
std::string ipText(const net::SocketAddress& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr, buf,
              sizeof(buf));
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr, buf,
              sizeof(buf));
  }
  return buf;
}

std::optional<net::SocketAddress> parseIpLiteral(const std::string& host) {
  sockaddr_in s4{};
  if (inet_pton(AF_INET, host.c_str(), &s4.sin_addr) == 1) {
    s4.sin_family = AF_INET;
    return net::SocketAddress::fromSockaddr(reinterpret_cast<const sockaddr*>(&s4), sizeof(s4));
  }
  sockaddr_in6 s6{};
  if (inet_pton(AF_INET6, host.c_str(), &s6.sin6_addr) == 1) {
    s6.sin6_family = AF_INET6;
    return net::SocketAddress::fromSockaddr(reinterpret_cast<const sockaddr*>(&s6), sizeof(s6));
  }
  return std::nullopt;
}

// Every distinct address of name (port 0), ordered by family then text so
// that the same answers in another order give the same targets.
absl::StatusOr<std::vector<net::SocketAddress>> lookup(const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;  // one entry per address, not one per socket type
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &res); rc != 0) {
    return absl::UnavailableError(gai_strerror(rc));
  }
  std::vector<std::pair<std::string, net::SocketAddress>> found;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    net::SocketAddress a = net::SocketAddress::fromSockaddr(ai->ai_addr, ai->ai_addrlen);
    a.setPort(0);
    std::string text = ipText(a);
    if (std::none_of(found.begin(), found.end(), [&](const auto& f) { return f.first == text; })) {
      found.emplace_back(std::move(text), a);
    }
  }
  ::freeaddrinfo(res);
  if (found.empty()) return absl::UnavailableError("no IPv4 or IPv6 address");
  std::sort(found.begin(), found.end(), [](const auto& x, const auto& y) {
    return std::make_pair(x.second.family(), x.first) < std::make_pair(y.second.family(), y.first);
  });
  std::vector<net::SocketAddress> addresses;
  for (auto& f : found) addresses.push_back(f.second);
  return addresses;
}

// (absl::string_view is not std::string_view in Debian's Abseil.)
bool isSelf(const std::string& host, std::string_view selfHostname) {
  for (absl::string_view name :
       absl::StrSplit(absl::string_view(selfHostname.data(), selfHostname.size()), ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(name), host)) return true;
  }
  return false;
}

// Whether t was made from entry e: its label is the entry's text, alone or
// followed by "/<ip>".
bool cameFrom(const MeshTarget& t, const MeshEntry& e) {
  absl::string_view label = t.label;
  if (t.host != e.host || !absl::ConsumePrefix(&label, e.text)) return false;
  return label.empty() || (absl::ConsumePrefix(&label, "/") && !absl::StrContains(label, '/'));
}

// The set as publish compares it: order does not count.
std::vector<std::pair<std::string, std::string>> canonical(const std::vector<MeshTarget>& ts) {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(ts.size());
  for (const MeshTarget& t : ts) out.emplace_back(t.id(), t.label);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

absl::StatusOr<std::string> parseMeshKey(absl::string_view text, absl::string_view source) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", why));
  };
  const absl::string_view key = absl::StripAsciiWhitespace(text);
  if (key.size() != kMeshKeyHexChars) {
    return bad(absl::StrCat("want ", kMeshKeyHexChars, " hex characters (a 32-byte key), found ",
                            key.size(), " characters"));
  }
  for (size_t i = 0; i < key.size(); i++) {
    if (!absl::ascii_isxdigit(key[i])) {
      return bad(absl::StrCat("not hex: character ", i + 1, " is not 0-9, a-f or A-F"));
    }
  }
  return absl::AsciiStrToLower(key);
}

absl::StatusOr<std::string> loadMeshKey(const std::string& path) {
  const std::string source = absl::StrCat("mesh key file ", path);
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": cannot read: ", std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": cannot read: ", std::strerror(errno)));
  return parseMeshKey(text.str(), source);
}

std::string MeshTarget::id() const {
  return absl::StrCat(tls ? "https" : "http", "://", host, "@", address.toString());
}

bool MeshTarget::operator==(const MeshTarget& other) const {
  return label == other.label && id() == other.id();
}

std::vector<MeshTarget> resolveMeshTargets(const std::vector<MeshEntry>& entries,
                                           std::string_view selfHostname, bool defaultTls,
                                           uint16_t defaultPort,
                                           const std::vector<MeshTarget>& previous) {
  std::vector<MeshTarget> targets;
  auto add = [&](MeshTarget t) {
    const std::string id = t.id();
    if (std::none_of(targets.begin(), targets.end(),
                     [&](const MeshTarget& have) { return have.id() == id; })) {
      targets.push_back(std::move(t));
    }
  };
  for (const MeshEntry& e : entries) {
    if (isSelf(e.host, selfHostname)) continue;
    const bool tls = e.tls.value_or(defaultTls);
    uint16_t port = defaultPort;
    if (e.port != 0) {
      port = e.port;
    } else if (e.tls.has_value()) {
      port = tls ? 443 : 80;  // what the URL means
    }
    std::vector<net::SocketAddress> addresses;
    const std::string& dial = e.dialHost.empty() ? e.host : e.dialHost;
    if (std::optional<net::SocketAddress> literal = parseIpLiteral(dial)) {
      addresses.push_back(*literal);
    } else {
      absl::StatusOr<std::vector<net::SocketAddress>> found = lookup(dial);
      if (!found.ok()) {
        size_t kept = 0;
        for (const MeshTarget& t : previous) {
          if (!cameFrom(t, e)) continue;
          add(t);
          kept++;
        }
        logWarn("mesh peer %s: cannot resolve %s: %s; keeping its %d previous address(es)", e.text,
                dial, found.status().message(), kept);
        continue;
      }
      addresses = *std::move(found);
    }
    for (net::SocketAddress& a : addresses) {
      a.setPort(port);
      MeshTarget t;
      t.label = addresses.size() == 1 ? e.text : absl::StrCat(e.text, "/", ipText(a));
      t.host = e.host;
      t.address = a;
      t.tls = tls;
      add(std::move(t));
    }
  }
  return targets;
}

MeshTargetStore::MeshTargetStore() : current_(std::make_shared<const std::vector<MeshTarget>>()) {}

bool MeshTargetStore::publish(std::vector<MeshTarget> targets) {
  std::lock_guard lock(mu_);
  if (canonical(targets) == canonical(*current_)) return false;
  current_ = std::make_shared<const std::vector<MeshTarget>>(std::move(targets));
  // Release: a shard that sees the new generation then loads this set (or a later one).
  generation_.fetch_add(1, std::memory_order_release);
  return true;
}

std::shared_ptr<const std::vector<MeshTarget>> MeshTargetStore::load() const {
  std::lock_guard lock(mu_);
  return current_;
}

MeshResolver::MeshResolver(std::vector<MeshEntry> entries, std::string selfHostname,
                           bool defaultTls, uint16_t defaultPort, MeshTargetStore& store,
                           Nanos interval, std::function<void()> onChange)
    : entries_(std::move(entries)),
      selfHostname_(std::move(selfHostname)),
      defaultTls_(defaultTls),
      defaultPort_(defaultPort),
      store_(store),
      interval_(interval),
      onChange_(std::move(onChange)) {}

MeshResolver::~MeshResolver() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void MeshResolver::resolveNow() { resolveOnce(/*notify=*/false); }

void MeshResolver::start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "derpd-mesh-dns");
    run();
  });
}

void MeshResolver::run() {
  if (!resolved_) resolveOnce(/*notify=*/true);
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, std::chrono::nanoseconds(interval_), [this] { return stop_; })) {
        return;
      }
    }
    resolveOnce(/*notify=*/true);
  }
}

void MeshResolver::resolveOnce(bool notify) {
  last_ = resolveMeshTargets(entries_, selfHostname_, defaultTls_, defaultPort_, last_);
  resolved_ = true;
  if (!store_.publish(last_)) return;
  logInfo("mesh: %d peer address(es): %s", last_.size(),
          absl::StrJoin(last_, ", ", [](std::string* out, const MeshTarget& t) {
            absl::StrAppend(out, t.label, " -> ", t.address.toString());
          }));
  if (notify && onChange_) onChange_();
}

}  // namespace derpd::relay
