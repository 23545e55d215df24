// The answers derpd's listeners give to an ACME CA's challenges while a
// certificate is being obtained (-certmode letsencrypt): HTTP-01 key
// authorizations by token, served on the -http-port listener at
// /.well-known/acme-challenge/<token> (RFC 8555 section 8.3). The ACME client
// (off the shards) publishes a new snapshot when a challenge starts or ends;
// shards load the current one per request.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "base/snapshot_store.h"

namespace derpd::http {

struct AcmeChallengeSnapshot {
  std::map<std::string, std::string, std::less<>> http01;  // token -> key authorization
};

using AcmeChallengeStore = SnapshotStore<AcmeChallengeSnapshot>;

}  // namespace derpd::http
