// ManualCerts: -certmode manual. Loads <certdir>/<name>.crt and .key for each
// hostname (derper's file names: the hostname with every character outside
// [a-zA-Z0-9.-] removed), generates a self-signed certificate for an IP
// hostname whose files do not exist, and reloads when the files change.
// Not thread-safe: one thread (the one handling reloads) owns and calls it;
// the ServerTls it feeds is what the shards share.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "tls/server_tls.h"

namespace derpd::tls {

class ManualCerts {
 public:
  struct Options {
    std::string certDir;
    std::vector<std::string> hostnames;  // the first is the default certificate
    std::string serverPublicHex;         // for the meta-cert
    // For the derpMap line logged with an IP certificate: the ports clients
    // use, written out when they are not the defaults (443, 3478; -1: no STUN;
    // 0: not known yet, left out).
    int derpPort = 443;
    int stunPort = 3478;
  };
  explicit ManualCerts(Options opts);

  // derper's file names for a hostname.
  static std::string crtPath(const std::string& dir, const std::string& hostname);
  static std::string keyPath(const std::string& dir, const std::string& hostname);

  // Loads every hostname's pair (generating and writing the IP certificate
  // where allowed and missing) and checks each is valid for its hostname.
  // `notices` receives what the operator must see, such as derper's
  // "Using self-signed certificate for IP address ..." line with the derpMap
  // node JSON and its CertName. Errors name the file.
  absl::StatusOr<std::shared_ptr<const CertSet>> load(std::vector<std::string>* notices);

  // Watches certDir with inotify (created, written, moved in, deleted).
  // fd() becomes readable on a change; call onWatchEvent() then. -1 if not watching.
  absl::Status watch();
  int fd() const { return inotify_.get(); }
  // Drains the inotify events; true if one concerns our files.
  bool onWatchEvent();

  // Loads the files again; on success swaps them into `tls` and returns the
  // new set; on failure `tls` keeps the old one and the error says why.
  absl::Status reload(ServerTls& tls);

 private:
  // Every hostname's pair, in hostname order. With `mayGenerate`, a missing
  // pair for an IP hostname is generated and written (load); without it, that
  // is an error like any other missing file (reload).
  absl::StatusOr<std::vector<CertifiedKey>> loadPairs(bool mayGenerate,
                                                      std::vector<std::string>* notices);

  Options opts_;
  UniqueFd inotify_;
  std::vector<std::string> watchedNames_;  // file names within certDir
};

}  // namespace derpd::tls
