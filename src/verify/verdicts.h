// What derpd asks to verify a client, and what it makes of the answers: the
// requests to tailscaled's LocalAPI and to an admission URL, and the verdicts
// from their responses, with derper's semantics. Pure; any thread.
//
// tailscaled (-verify-clients): GET /localapi/v0/whois?addr=nodekey%3A<hex>
// over its unix socket, with the headers Tailscale's LocalAPI client sends
// (docs/ARCHITECTURE.md, "Client verification"). 200 admits, 404 rejects,
// anything else rejects (fail closed).
//
// Admission URL (-verify-client-url): POST {"NodePublic":"nodekey:<hex>",
// "Source":"<ip>"}; at most 4 KiB of the reply is read. 200 with a first JSON
// value whose Allow (any case, as Go decodes) is true admits; another status,
// a bad body or Allow false rejects; only a failure to get a response at all
// admits, and only with fail-open.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/http_fetch.h"
#include "derp/key.h"
#include "relay/client_check.h"

namespace derpd::verify {

// The Tailscale-Cap header's value: the capability version of a 2025
// tailscaled (Tailscale's client sends its own; tailscaled does not need it
// for WhoIs).
inline constexpr int kTailscaleCapabilityVersion = 130;
// How much of an admission reply is read (derper's io.LimitReader).
inline constexpr size_t kMaxAdmissionReply = 4 << 10;

client::HttpRequest whoisRequest(const derp::NodeKey& key, const std::string& socketPath,
                                 Nanos timeout);
relay::Verdict whoisVerdict(const absl::StatusOr<client::HttpResponse>& response);

client::HttpRequest admissionRequest(const std::string& url, const derp::NodeKey& key,
                                     const std::array<uint8_t, 16>& ip, Nanos timeout);
relay::Verdict admissionVerdict(const absl::StatusOr<client::HttpResponse>& response,
                                bool failOpen);

// The admission reply's Allow, read from the first JSON value of body as Go's
// json.Decoder reads a DERPAdmitClientResponse: what follows that value is
// ignored; null or an object without Allow is false; an Allow that is not a
// boolean, a value that is not an object, or broken JSON is an error.
absl::StatusOr<bool> parseAdmitReply(absl::string_view body);

}  // namespace derpd::verify
