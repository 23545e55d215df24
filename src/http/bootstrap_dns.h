// What /bootstrap-dns serves (PROTOCOL.md "HTTP endpoints"): the answers for
// -bootstrap-dns-names and -unpublished-bootstrap-dns-names, as an immutable
// snapshot. A resolver (off the shards) builds a new snapshot and publishes
// it in a BootstrapDnsStore; shards load the current one per request.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/snapshot_store.h"

namespace derpd::http {

// A name and the IP addresses it resolved to, as text.
using DnsAnswer = std::pair<std::string, std::vector<std::string>>;

// An unpublished name's answer and the share of clients it is given to (0 to
// 1: 1 without a TXT name, else from the TXT record; http/rollout.h).
struct RolloutAnswer {
  DnsAnswer answer;
  double share;
};

struct BootstrapDnsSnapshot {
  struct Unpublished {
    std::string json;  // the JSON body naming only this name
    double share;
  };
  // The JSON body for a plain request: every published name.
  std::string publishedJson;
  std::set<std::string, std::less<>> publishedNames;
  // Unpublished names, for ?q=<name>. Names that resolved to nothing are
  // absent.
  std::map<std::string, Unpublished, std::less<>> unpublished;

  static BootstrapDnsSnapshot build(const std::vector<DnsAnswer>& published,
                                    const std::vector<RolloutAnswer>& unpublished);
};

// derper's JSON for answers: an object name -> list of address strings, keys
// sorted, tab-indented (Go's json.MarshalIndent(m, "", "\t")).
std::string bootstrapDnsJson(std::vector<DnsAnswer> answers);

// The current snapshot (base/snapshot_store.h).
using BootstrapDnsStore = SnapshotStore<BootstrapDnsSnapshot>;

}  // namespace derpd::http
