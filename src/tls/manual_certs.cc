#include "tls/manual_certs.h"

#include <errno.h>
#include <openssl/mem.h>
#include <openssl/pool.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/files.h"
#include "tls/client_context.h"

namespace derpd::tls {
namespace {

constexpr uint32_t kWatchMask =
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_ATTRIB;

// derper's keyname: the hostname with every character outside
// [a-zA-Z0-9.-] removed, so a hostname cannot name a path outside certDir.
std::string fileStem(const std::string& hostname) {
  std::string out;
  for (char c : hostname) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
        c == '-') {
      out.push_back(c);
    }
  }
  return out;
}

bool isIpLiteral(const std::string& host) { return !ipLiteral(host).empty(); }

bool missing(const std::string& path) {
  return ::access(path.c_str(), F_OK) != 0 && errno == ENOENT;
}

// Wall-clock seconds: certificate validity is calendar time, which the
// monotonic Clock of the data path does not give.
int64_t wallNow() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

ManualCerts::ManualCerts(Options opts) : opts_(std::move(opts)) {}

std::string ManualCerts::crtPath(const std::string& dir, const std::string& hostname) {
  return joinPath(dir, fileStem(hostname) + ".crt");
}

std::string ManualCerts::keyPath(const std::string& dir, const std::string& hostname) {
  return joinPath(dir, fileStem(hostname) + ".key");
}

absl::StatusOr<std::vector<CertifiedKey>> ManualCerts::loadPairs(
    bool mayGenerate, std::vector<std::string>* notices) {
  if (opts_.hostnames.empty()) {
    return absl::InvalidArgumentError("no hostname to load a certificate for");
  }
  std::vector<CertifiedKey> pairs;
  for (const std::string& host : opts_.hostnames) {
    const std::string crt = crtPath(opts_.certDir, host);
    const std::string key = keyPath(opts_.certDir, host);
    const bool ip = isIpLiteral(host);
    absl::StatusOr<CertifiedKey> pair;
    // Only when both are absent: generating over a lone file would destroy
    // what the operator put there.
    if (mayGenerate && ip && missing(crt) && missing(key)) {
      pair = generateSelfSignedIp(host, wallNow());
      if (pair.ok()) {
        if (absl::Status s = writePemFiles(*pair, crt, key); !s.ok()) {
          return absl::Status(s.code(), absl::StrCat("writing the self-signed certificate for ",
                                                     host, ": ", s.message()));
        }
      }
    } else {
      pair = loadPemFiles(crt, key);
    }
    if (!pair.ok()) {
      return absl::Status(pair.status().code(),
                          absl::StrCat("hostname ", host, ": ", pair.status().message()));
    }
    if (!matchesHost(*pair, host)) {
      return absl::InvalidArgumentError(
          absl::StrCat("certificate ", crt, " is not valid for ", host,
                       " (it names: ", absl::StrJoin(pair->names, ", "), ")"));
    }
    if (ip && notices != nullptr) {
      // derper's log line, word for word: operators paste the JSON into
      // their DERPMap.
      notices->push_back(absl::StrCat("Using self-signed certificate for IP address \"", host,
                                      "\". Configure it in DERPMap using: "
                                      "(https://tailscale.com/s/custom-derp)"));
      std::string ports;
      if (opts_.derpPort != 443 && opts_.derpPort != 0) {
        absl::StrAppend(&ports, R"(,"DERPPort":)", opts_.derpPort);
      }
      if (opts_.stunPort != 3478 && opts_.stunPort != 0) {
        absl::StrAppend(&ports, R"(,"STUNPort":)", opts_.stunPort);
      }
      notices->push_back(absl::StrCat(R"(  {"Name":"custom","RegionID":900,"HostName":")", host,
                                      R"(","CertName":")", certName(*pair), R"(")", ports, "}"));
    }
    pairs.push_back(std::move(*pair));
  }
  return pairs;
}

absl::StatusOr<std::shared_ptr<const CertSet>> ManualCerts::load(
    std::vector<std::string>* notices) {
  absl::StatusOr<std::vector<CertifiedKey>> pairs = loadPairs(/*mayGenerate=*/true, notices);
  if (!pairs.ok()) return pairs.status();
  auto set = std::make_shared<CertSet>();
  set->certs = std::move(*pairs);
  if (!opts_.serverPublicHex.empty()) {
    absl::StatusOr<bssl::UniquePtr<CRYPTO_BUFFER>> meta =
        makeFreshMetaCert(opts_.serverPublicHex, wallNow());
    if (!meta.ok()) return meta.status();
    set->metaCert = std::move(*meta);
  }
  return set;
}

absl::Status ManualCerts::watch() {
  UniqueFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "inotify_init1");
  const std::string dir = opts_.certDir.empty() ? "." : opts_.certDir;
  if (::inotify_add_watch(fd.get(), dir.c_str(), kWatchMask) < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("watch certificate directory ", dir));
  }
  watchedNames_.clear();
  for (const std::string& host : opts_.hostnames) {
    watchedNames_.push_back(fileStem(host) + ".crt");
    watchedNames_.push_back(fileStem(host) + ".key");
  }
  inotify_ = std::move(fd);
  return absl::OkStatus();
}

bool ManualCerts::onWatchEvent() {
  if (!inotify_.valid()) return false;
  bool ours = false;
  alignas(inotify_event) char buf[16 * 1024];
  for (;;) {
    const ssize_t n = ::read(inotify_.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EAGAIN: drained
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      // Lost events or a lost watch (the directory went away): we cannot
      // tell what changed, so assume our files did.
      if ((ev->mask & (IN_Q_OVERFLOW | IN_IGNORED)) != 0) {
        ours = true;
        continue;
      }
      if (ev->len == 0) continue;
      const std::string_view name(ev->name, ::strnlen(ev->name, ev->len));
      if (std::find(watchedNames_.begin(), watchedNames_.end(), name) != watchedNames_.end()) {
        ours = true;
      }
    }
  }
  return ours;
}

absl::Status ManualCerts::reload(ServerTls& tls) {
  absl::StatusOr<std::vector<CertifiedKey>> pairs = loadPairs(/*mayGenerate=*/false, nullptr);
  if (!pairs.ok()) return pairs.status();
  auto set = std::make_shared<CertSet>();
  set->certs = std::move(*pairs);
  // The meta-cert names the server key, which a reload does not change; keep
  // the one clients may already have seen.
  if (std::shared_ptr<const CertSet> old = tls.certs(); old && old->metaCert) {
    CRYPTO_BUFFER_up_ref(old->metaCert.get());
    set->metaCert.reset(old->metaCert.get());
  }
  tls.replaceCerts(std::move(set));
  return absl::OkStatus();
}

}  // namespace derpd::tls
