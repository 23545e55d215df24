// What /bootstrap-dns serves (PROTOCOL.md "HTTP endpoints"): the answers for
// -bootstrap-dns-names and -unpublished-bootstrap-dns-names, as an immutable
// snapshot. A resolver (off the shards) builds a new snapshot and publishes
// it in a BootstrapDnsStore; shards load the current one per request.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/snapshot_store.h"

namespace derpd::http {

// A name and the IP addresses it resolved to, as text.
using DnsAnswer = std::pair<std::string, std::vector<std::string>>;

struct BootstrapDnsSnapshot {
  // The JSON body for a plain request: every published name.
  std::string publishedJson;
  // Unpublished name -> the JSON body naming only it, for ?q=<name>. Names
  // that resolved to nothing are absent.
  std::map<std::string, std::string, std::less<>> unpublishedJson;

  static BootstrapDnsSnapshot build(const std::vector<DnsAnswer>& published,
                                    const std::vector<DnsAnswer>& unpublished);
};

// derper's JSON for answers: an object name -> list of address strings, keys
// sorted, tab-indented (Go's json.MarshalIndent(m, "", "\t")).
std::string bootstrapDnsJson(std::vector<DnsAnswer> answers);

// The current snapshot (base/snapshot_store.h).
using BootstrapDnsStore = SnapshotStore<BootstrapDnsSnapshot>;

}  // namespace derpd::http
