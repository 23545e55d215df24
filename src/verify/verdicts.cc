#include "verify/verdicts.h"

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "net/socket_address.h"

namespace derpd::verify {
namespace {

relay::Verdict reject(relay::RejectReason reason, std::string detail) {
  return relay::Verdict{false, reason, std::move(detail)};
}

// The start of a body for a log line: one line, at most 200 bytes.
std::string excerpt(const std::string& body) {
  std::string s = body.substr(0, 200);
  for (char& c : s) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  return std::string(absl::StripAsciiWhitespace(s));
}

// Reads the first JSON value as a DERPAdmitClientResponse (see parseAdmitReply).
class AdmitReplySax final : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool allow = false;
  bool typeError = false;
  bool syntaxError = false;

  bool null() override { return value(kNull); }
  bool boolean(bool v) override {
    if (depth_ == 1 && atAllow_) allow = v;
    return value(kBool);
  }
  bool number_integer(number_integer_t) override { return value(kOther); }
  bool number_unsigned(number_unsigned_t) override { return value(kOther); }
  bool number_float(number_float_t, const string_t&) override { return value(kOther); }
  bool string(string_t&) override { return value(kOther); }
  bool binary(binary_t&) override { return value(kOther); }
  bool start_object(std::size_t) override {
    if (depth_ > 0) value(kOther);
    depth_++;
    return true;
  }
  bool key(string_t& k) override {
    if (depth_ == 1) atAllow_ = absl::EqualsIgnoreCase(k, "allow");
    return true;
  }
  bool end_object() override {
    depth_--;
    return true;
  }
  bool start_array(std::size_t) override {
    value(kOther);
    depth_++;
    return true;
  }
  bool end_array() override {
    depth_--;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    syntaxError = true;
    return false;
  }

 private:
  enum Kind { kNull, kBool, kOther };
  // A scalar, or a nested object or array starting.
  bool value(Kind kind) {
    if (depth_ == 0) {
      // The whole reply is a scalar or an array: only null decodes (to nothing).
      if (kind != kNull) typeError = true;
    } else if (depth_ == 1 && atAllow_) {
      if (kind == kOther) typeError = true;  // Go: cannot unmarshal into bool
      atAllow_ = false;
    }
    return true;
  }

  int depth_ = 0;
  bool atAllow_ = false;  // the next value at depth 1 is an Allow
};

}  // namespace

client::HttpRequest whoisRequest(const derp::NodeKey& key, const std::string& socketPath,
                                 Nanos timeout) {
  client::HttpRequest r;
  r.method = "GET";
  // url.QueryEscape("nodekey:<hex>"): the colon is escaped.
  r.url = absl::StrCat("http://local-tailscaled.sock/localapi/v0/whois?addr=nodekey%3A", key.hex());
  r.unixSocket = socketPath;
  r.headers = {{"Tailscale-Cap", absl::StrCat(kTailscaleCapabilityVersion)}};
  r.timeout = timeout;
  r.maxBodyBytes = 1 << 20;
  r.truncateBody = true;  // the body is only read for an error's text
  return r;
}

relay::Verdict whoisVerdict(const absl::StatusOr<client::HttpResponse>& response) {
  if (!response.ok()) {
    return reject(relay::RejectReason::kTailscaledError,
                  absl::StrCat("tailscaled not reachable: ", response.status().message()));
  }
  if (response->status == 200) return relay::Verdict{true, {}, "known to tailscaled"};
  if (response->status == 404) {
    return reject(relay::RejectReason::kNotInTailnet, "not found in the local tailscaled");
  }
  // Before node-key WhoIs (tailscale issue 12617), the key was not an address.
  if (absl::StrContains(response->body, "invalid 'addr' parameter")) {
    return reject(relay::RejectReason::kTailscaledTooOld,
                  "tailscaled too old for -verify-clients (no WhoIs by node key): upgrade it");
  }
  return reject(
      relay::RejectReason::kTailscaledError,
      absl::StrCat("tailscaled answered ", response->status, ": ", excerpt(response->body)));
}

client::HttpRequest admissionRequest(const std::string& url, const derp::NodeKey& key,
                                     const std::array<uint8_t, 16>& ip, Nanos timeout) {
  client::HttpRequest r;
  r.method = "POST";
  r.url = url;
  r.body = nlohmann::json{{"NodePublic", key.toString()}, {"Source", net::formatIp(ip)}}.dump();
  r.headers = {{"Content-Type", "application/json"}};
  r.timeout = timeout;
  r.maxBodyBytes = kMaxAdmissionReply;
  r.truncateBody = true;
  return r;
}

relay::Verdict admissionVerdict(const absl::StatusOr<client::HttpResponse>& response,
                                bool failOpen) {
  if (!response.ok()) {
    if (failOpen) {
      return relay::Verdict{true,
                            {},
                            absl::StrCat("admission URL unreachable, admitted (fail open): ",
                                         response.status().message())};
    }
    return reject(relay::RejectReason::kUrlUnreachable,
                  absl::StrCat("admission URL unreachable: ", response.status().message()));
  }
  if (response->status != 200) {
    return reject(relay::RejectReason::kUrlStatus,
                  absl::StrCat("admission URL answered ", response->status));
  }
  absl::StatusOr<bool> allow = parseAdmitReply(response->body);
  if (!allow.ok()) {
    return reject(relay::RejectReason::kUrlBadReply,
                  absl::StrCat("admission URL reply: ", allow.status().message()));
  }
  if (!*allow) return reject(relay::RejectReason::kUrlDenied, "admission URL said not allowed");
  return relay::Verdict{true, {}, "allowed by the admission URL"};
}

absl::StatusOr<bool> parseAdmitReply(absl::string_view body) {
  AdmitReplySax sax;
  // Not strict: the first value is read and what follows it ignored.
  nlohmann::json::sax_parse(body.begin(), body.end(), &sax, nlohmann::json::input_format_t::json,
                            /*strict=*/false);
  if (sax.syntaxError) return absl::InvalidArgumentError("not JSON (or cut at 4 KiB)");
  if (sax.typeError) return absl::InvalidArgumentError("not a {\"Allow\": bool} object");
  return sax.allow;
}

}  // namespace derpd::verify
