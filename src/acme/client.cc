#include "acme/client.h"

#include <openssl/obj.h>
#include <openssl/sha.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>

#include <nlohmann/json.hpp>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "acme/jose.h"
#include "base/clock.h"
#include "client/fd_wait.h"
#include "tls/ssl_error.h"

namespace derpd::acme {
namespace {

constexpr const char* kRetryAfterPayload = "type.derpd/acme.retry-after";
constexpr int kBadNonceRetries = 10;
constexpr size_t kMaxAnswerBytes = 1 << 20;

using Json = nlohmann::json;

std::string str(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The problem document's text: "detail (type)", with its subproblems.
std::string problemText(const Json& j) {
  if (!j.is_object()) return {};
  std::string out = str(j, "detail");
  const std::string type = str(j, "type");
  if (!type.empty()) absl::StrAppend(&out, out.empty() ? "" : " ", "(", type, ")");
  auto subs = j.find("subproblems");
  if (subs != j.end() && subs->is_array()) {
    for (const Json& sub : *subs) absl::StrAppend(&out, "; ", problemText(sub));
  }
  return out;
}

absl::StatusOr<Json> parseJson(const client::HttpResponse& r, const std::string& url) {
  Json j = Json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(absl::StrCat("ACME: ", url, " answered ", r.status,
                                            " with a body that is not a JSON object"));
  }
  return j;
}

Order orderFrom(const Json& j, std::string url) {
  Order o;
  o.url = std::move(url);
  o.status = str(j, "status");
  o.finalize = str(j, "finalize");
  o.certificate = str(j, "certificate");
  auto authz = j.find("authorizations");
  if (authz != j.end() && authz->is_array()) {
    for (const Json& a : *authz) {
      if (a.is_string()) o.authorizations.push_back(a.get<std::string>());
    }
  }
  auto err = j.find("error");
  if (err != j.end()) o.error = problemText(*err);
  return o;
}

}  // namespace

std::optional<int64_t> retryAfterUnix(const absl::Status& status) {
  absl::optional<absl::Cord> p = status.GetPayload(kRetryAfterPayload);
  int64_t v = 0;
  if (!p.has_value() || !absl::SimpleAtoi(std::string(*p), &v)) return std::nullopt;
  return v;
}

std::optional<int64_t> parseRetryAfter(absl::string_view value, int64_t now) {
  value = absl::StripAsciiWhitespace(value);
  int64_t seconds = 0;
  if (!value.empty() && value.size() < 12 &&
      std::all_of(value.begin(), value.end(),
                  [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) &&
      absl::SimpleAtoi(value, &seconds)) {
    return now + seconds;
  }
  absl::Time t;
  std::string err;
  if (absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", std::string(value), &t, &err)) {
    return absl::ToUnixSeconds(t);
  }
  return std::nullopt;
}

Client::Client(Options options, bssl::UniquePtr<EVP_PKEY> accountKey)
    : options_(std::move(options)), accountKey_(std::move(accountKey)) {}

Client::~Client() = default;

absl::Status Client::problem(const client::HttpResponse& r, const std::string& url) {
  Json j = Json::parse(r.body, nullptr, false);
  std::string text = problemText(j);
  if (text.empty()) text = absl::StrCat("HTTP ", r.status);
  const std::string type = j.is_object() ? str(j, "type") : std::string();
  absl::StatusCode code = absl::StatusCode::kFailedPrecondition;
  if (r.status == 429 || type == "urn:ietf:params:acme:error:rateLimited") {
    code = absl::StatusCode::kResourceExhausted;
  } else if (r.status >= 500) {
    code = absl::StatusCode::kUnavailable;
  }
  absl::Status st(code, absl::StrCat("ACME: ", url, ": ", text));
  if (lastRetryAfter_.has_value()) {
    st.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(*lastRetryAfter_)));
  }
  return st;
}

absl::Status Client::loadDirectory() {
  if (dir_.has_value()) return absl::OkStatus();
  client::HttpRequest req;
  req.url = options_.directoryUrl;
  req.timeout = options_.requestTimeout;
  req.maxBodyBytes = kMaxAnswerBytes;
  absl::StatusOr<client::HttpResponse> r = client::fetch(req, options_.trust);
  if (!r.ok()) return r.status();
  if (r->status != 200) return problem(*r, req.url);
  absl::StatusOr<Json> j = parseJson(*r, req.url);
  if (!j.ok()) return j.status();
  Directory d;
  d.newNonce = str(*j, "newNonce");
  d.newAccount = str(*j, "newAccount");
  d.newOrder = str(*j, "newOrder");
  auto meta = j->find("meta");
  if (meta != j->end() && meta->is_object()) {
    d.termsOfService = str(*meta, "termsOfService");
    auto ear = meta->find("externalAccountRequired");
    d.externalAccountRequired = ear != meta->end() && ear->is_boolean() && ear->get<bool>();
  }
  if (d.newNonce.empty() || d.newAccount.empty() || d.newOrder.empty()) {
    return absl::DataLossError(absl::StrCat("ACME: the directory at ", req.url,
                                            " lacks newNonce, newAccount or newOrder"));
  }
  dir_ = std::move(d);
  return absl::OkStatus();
}

absl::StatusOr<std::string> Client::takeNonce() {
  if (!nonce_.empty()) return std::exchange(nonce_, {});
  if (absl::Status st = loadDirectory(); !st.ok()) return st;
  client::HttpRequest req;
  req.method = "HEAD";
  req.url = dir_->newNonce;
  req.timeout = options_.requestTimeout;
  absl::StatusOr<client::HttpResponse> r = client::fetch(req, options_.trust);
  if (!r.ok()) return r.status();
  const std::string* n = r->header("replay-nonce");
  if (n == nullptr || n->empty()) {
    return absl::DataLossError(
        absl::StrCat("ACME: ", req.url, " answered ", r->status, " without a Replay-Nonce"));
  }
  return *n;
}

absl::StatusOr<client::HttpResponse> Client::post(const std::string& url,
                                                  const std::optional<std::string>& payload,
                                                  bool kid) {
  if (kid && accountUrl_.empty()) {
    return absl::FailedPreconditionError("ACME: no account yet (registerAccount first)");
  }
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<std::string> nonce = takeNonce();
    if (!nonce.ok()) return nonce.status();
    JwsHeader header{*nonce, url, kid ? accountUrl_ : std::string()};
    absl::StatusOr<std::string> jws = signEs256(accountKey_.get(), header, payload.value_or(""));
    if (!jws.ok()) return jws.status();
    client::HttpRequest req;
    req.method = "POST";
    req.url = url;
    req.headers = {{"Content-Type", "application/jose+json"}};
    req.body = std::move(*jws);
    req.timeout = options_.requestTimeout;
    req.maxBodyBytes = kMaxAnswerBytes;
    absl::StatusOr<client::HttpResponse> r = client::fetch(req, options_.trust);
    if (!r.ok()) return r.status();
    if (const std::string* n = r->header("replay-nonce")) nonce_ = *n;
    lastRetryAfter_.reset();
    if (const std::string* ra = r->header("retry-after")) {
      lastRetryAfter_ = parseRetryAfter(*ra, unixNow());
    }
    if (r->status < 400) return r;
    Json j = Json::parse(r->body, nullptr, false);
    const bool badNonce = j.is_object() && str(j, "type") == "urn:ietf:params:acme:error:badNonce";
    if (!badNonce || attempt + 1 >= kBadNonceRetries) return problem(*r, url);
    ++badNonceRetries_;
  }
}

absl::Status Client::registerAccount(const std::string& email, const std::string& eabKid,
                                     const std::string& eabKeyBase64url) {
  if (absl::Status st = loadDirectory(); !st.ok()) return st;
  Json payload = {{"termsOfServiceAgreed", true}};
  if (!email.empty()) payload["contact"] = Json::array({"mailto:" + email});
  if (!eabKid.empty()) {
    absl::StatusOr<std::string> eab =
        externalAccountBinding(accountKey_.get(), eabKid, eabKeyBase64url, dir_->newAccount);
    if (!eab.ok()) return eab.status();
    payload["externalAccountBinding"] = Json::parse(*eab);
  } else if (dir_->externalAccountRequired) {
    return absl::InvalidArgumentError(
        absl::StrCat("ACME: ", options_.directoryUrl,
                     " requires external account binding: set -acme-eab-kid and -acme-eab-key"));
  }
  absl::StatusOr<client::HttpResponse> r = post(dir_->newAccount, payload.dump(), false);
  if (!r.ok()) return r.status();
  const std::string* location = r->header("location");
  if (location == nullptr || location->empty()) {
    return absl::DataLossError("ACME: newAccount answered without the account's Location");
  }
  accountUrl_ = *location;
  return absl::OkStatus();
}

absl::StatusOr<Order> Client::newOrder(const std::vector<std::string>& dnsNames) {
  if (absl::Status st = loadDirectory(); !st.ok()) return st;
  Json ids = Json::array();
  for (const std::string& n : dnsNames) ids.push_back({{"type", "dns"}, {"value", n}});
  absl::StatusOr<client::HttpResponse> r = post(dir_->newOrder, Json{{"identifiers", ids}}.dump());
  if (!r.ok()) return r.status();
  absl::StatusOr<Json> j = parseJson(*r, dir_->newOrder);
  if (!j.ok()) return j.status();
  const std::string* location = r->header("location");
  if (location == nullptr || location->empty()) {
    return absl::DataLossError("ACME: newOrder answered without the order's Location");
  }
  return orderFrom(*j, *location);
}

absl::StatusOr<Order> Client::getOrder(const std::string& url) {
  absl::StatusOr<client::HttpResponse> r = post(url, std::nullopt);
  if (!r.ok()) return r.status();
  absl::StatusOr<Json> j = parseJson(*r, url);
  if (!j.ok()) return j.status();
  return orderFrom(*j, url);
}

absl::StatusOr<Authorization> Client::getAuthorization(const std::string& url) {
  absl::StatusOr<client::HttpResponse> r = post(url, std::nullopt);
  if (!r.ok()) return r.status();
  absl::StatusOr<Json> j = parseJson(*r, url);
  if (!j.ok()) return j.status();
  Authorization a;
  a.status = str(*j, "status");
  auto id = j->find("identifier");
  if (id != j->end() && id->is_object()) a.identifier = str(*id, "value");
  auto chs = j->find("challenges");
  if (chs != j->end() && chs->is_array()) {
    for (const Json& c : *chs) {
      if (!c.is_object()) continue;
      Challenge ch{str(c, "type"), str(c, "url"), str(c, "token"), str(c, "status"), {}};
      auto err = c.find("error");
      if (err != c.end()) ch.error = problemText(*err);
      a.challenges.push_back(std::move(ch));
    }
  }
  return a;
}

absl::Status Client::acceptChallenge(const std::string& url) {
  absl::StatusOr<client::HttpResponse> r = post(url, std::string("{}"));
  return r.ok() ? absl::OkStatus() : r.status();
}

absl::StatusOr<Order> Client::finalize(const Order& order, std::span<const uint8_t> csrDer) {
  absl::StatusOr<client::HttpResponse> r =
      post(order.finalize, Json{{"csr", base64url(csrDer)}}.dump());
  if (!r.ok()) return r.status();
  absl::StatusOr<Json> j = parseJson(*r, order.finalize);
  if (!j.ok()) return j.status();
  return orderFrom(*j, order.url);
}

absl::StatusOr<std::string> Client::downloadCertificate(const std::string& url) {
  absl::StatusOr<client::HttpResponse> r = post(url, std::nullopt);
  if (!r.ok()) return r.status();
  return std::move(r->body);
}

namespace {

// The subjectAltName extension naming dnsNames.
bssl::UniquePtr<X509_EXTENSION> dnsSubjectAltNames(const std::vector<std::string>& dnsNames) {
  bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
  if (!names) return nullptr;
  for (const std::string& n : dnsNames) {
    bssl::UniquePtr<GENERAL_NAME> g(GENERAL_NAME_new());
    bssl::UniquePtr<ASN1_IA5STRING> s(ASN1_IA5STRING_new());
    if (!g || !s || !ASN1_STRING_set(s.get(), n.data(), static_cast<int>(n.size()))) {
      return nullptr;
    }
    GENERAL_NAME_set0_value(g.get(), GEN_DNS, s.release());
    if (!bssl::PushToStack(names.get(), std::move(g))) return nullptr;
  }
  return bssl::UniquePtr<X509_EXTENSION>(X509V3_EXT_i2d(NID_subject_alt_name, 0, names.get()));
}

}  // namespace

absl::StatusOr<tls::CertifiedKey> tlsAlpnCertificate(const std::string& dnsName,
                                                     absl::string_view keyAuthorization) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(keyAuthorization.data()), keyAuthorization.size(),
         digest);
  // extnValue: the DER of an OCTET STRING holding the digest.
  uint8_t value[2 + SHA256_DIGEST_LENGTH] = {0x04, SHA256_DIGEST_LENGTH};
  std::copy(digest, digest + SHA256_DIGEST_LENGTH, value + 2);
  bssl::UniquePtr<ASN1_OCTET_STRING> octets(ASN1_OCTET_STRING_new());
  bssl::UniquePtr<ASN1_OBJECT> oid(OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1));
  if (!octets || !oid || !ASN1_OCTET_STRING_set(octets.get(), value, sizeof(value))) {
    return absl::InternalError(
        absl::StrCat("making the TLS-ALPN-01 certificate: ", tls::drainSslErrors()));
  }
  const int64_t now = unixNow();
  return tls::generateSelfSigned(
      "derpd ACME challenge", now - 3600, now + 7 * 86400, [&](X509* x509) {
        bssl::UniquePtr<X509_EXTENSION> acmeId(
            X509_EXTENSION_create_by_OBJ(nullptr, oid.get(), /*crit=*/1, octets.get()));
        bssl::UniquePtr<X509_EXTENSION> san = dnsSubjectAltNames({dnsName});
        return acmeId && san && X509_add_ext(x509, san.get(), -1) &&
               X509_add_ext(x509, acmeId.get(), -1);
      });
}

absl::StatusOr<std::vector<uint8_t>> makeCsr(EVP_PKEY* key,
                                             const std::vector<std::string>& dnsNames) {
  auto fail = [](absl::string_view what) {
    return absl::InternalError(absl::StrCat("making the CSR: ", what, ": ", tls::drainSslErrors()));
  };
  if (dnsNames.empty()) return absl::InvalidArgumentError("a CSR needs at least one name");
  bssl::UniquePtr<X509_REQ> req(X509_REQ_new());
  if (!req || !X509_REQ_set_version(req.get(), X509_REQ_VERSION_1)) return fail("X509_REQ");
  // The CN is optional and at most 64 characters; the names that count are
  // the subjectAltNames.
  if (dnsNames[0].size() <= 64 &&
      !X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req.get()), "CN", MBSTRING_ASC,
                                  reinterpret_cast<const uint8_t*>(dnsNames[0].c_str()), -1, -1,
                                  0)) {
    return fail("subject");
  }
  bssl::UniquePtr<STACK_OF(X509_EXTENSION)> exts(sk_X509_EXTENSION_new_null());
  bssl::UniquePtr<X509_EXTENSION> san = dnsSubjectAltNames(dnsNames);
  if (!exts || !san || !bssl::PushToStack(exts.get(), std::move(san)) ||
      !X509_REQ_add_extensions(req.get(), exts.get()) || !X509_REQ_set_pubkey(req.get(), key) ||
      !X509_REQ_sign(req.get(), key, EVP_sha256())) {
    return fail("signing");
  }
  uint8_t* der = nullptr;
  int len = i2d_X509_REQ(req.get(), &der);
  if (len <= 0) return fail("encoding");
  std::vector<uint8_t> out(der, der + len);
  OPENSSL_free(der);
  return out;
}

absl::StatusOr<tls::CertifiedKey> obtainCertificate(Client& client,
                                                    const std::vector<std::string>& dnsNames,
                                                    const std::vector<std::string>& challengeTypes,
                                                    const ChallengeHooks& hooks, const Waiter& wait,
                                                    Nanos timeout) {
  const Nanos deadline = client::monotonicNow() + timeout;
  const std::string what = absl::StrJoin(dnsNames, ", ");
  // Waits as the CA's last answer said (1 s when it said nothing, at most
  // 10 s), or fails when the time is up or the caller is stopping.
  auto pause = [&](absl::string_view waitingFor) -> absl::Status {
    Nanos delay = kSecond;
    if (std::optional<int64_t> ra = client.lastRetryAfterUnix()) {
      delay = std::clamp<Nanos>((*ra - unixNow()) * kSecond, kSecond, 10 * kSecond);
    }
    if (client::monotonicNow() + delay > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "ACME: gave up on ", what, " after ", timeout / kSecond, " s waiting for ", waitingFor));
    }
    if (!wait(delay)) return absl::CancelledError("ACME: stopping");
    return absl::OkStatus();
  };

  absl::StatusOr<Order> order = client.newOrder(dnsNames);
  if (!order.ok()) return order.status();
  std::vector<OpenChallenge> published;
  absl::Cleanup withdraw = [&] {
    for (const OpenChallenge& c : published) hooks.withdraw(c);
  };
  std::vector<std::string> pending;
  for (const std::string& url : order->authorizations) {
    absl::StatusOr<Authorization> authz = client.getAuthorization(url);
    if (!authz.ok()) return authz.status();
    if (authz->status == "valid") continue;
    if (authz->status != "pending") {
      return absl::FailedPreconditionError(
          absl::StrCat("ACME: the authorization for ", authz->identifier, " is ", authz->status));
    }
    auto ch = authz->challenges.end();
    for (const std::string& type : challengeTypes) {
      ch = std::find_if(authz->challenges.begin(), authz->challenges.end(),
                        [&](const Challenge& c) { return c.type == type; });
      if (ch != authz->challenges.end()) break;
    }
    if (ch == authz->challenges.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("ACME: the CA offers none of the challenges ",
                       absl::StrJoin(challengeTypes, ", "), " for ", authz->identifier));
    }
    absl::StatusOr<std::string> keyAuth = keyAuthorization(ch->token, client.accountKey());
    if (!keyAuth.ok()) return keyAuth.status();
    published.push_back({ch->type, authz->identifier, ch->token, *keyAuth});
    hooks.publish(published.back());
    if (absl::Status st = client.acceptChallenge(ch->url); !st.ok()) return st;
    pending.push_back(url);
  }
  for (const std::string& url : pending) {
    for (;;) {
      absl::StatusOr<Authorization> authz = client.getAuthorization(url);
      if (!authz.ok()) return authz.status();
      if (authz->status == "valid") break;
      if (authz->status != "pending") {
        std::string why;
        for (const Challenge& c : authz->challenges) {
          if (!c.error.empty()) absl::StrAppend(&why, " (", c.type, ": ", c.error, ")");
        }
        return absl::FailedPreconditionError(absl::StrCat(
            "ACME: the CA did not validate ", authz->identifier, ": ", authz->status, why));
      }
      if (absl::Status st = pause("validation"); !st.ok()) return st;
    }
  }
  std::move(withdraw).Invoke();
  published.clear();

  bssl::UniquePtr<EVP_PKEY> key = tls::newP256Key();
  if (!key) return absl::InternalError("generating the certificate's key failed");
  absl::StatusOr<std::vector<uint8_t>> csr = makeCsr(key.get(), dnsNames);
  if (!csr.ok()) return csr.status();
  for (;;) {
    order = client.getOrder(order->url);
    if (!order.ok()) return order.status();
    if (order->status != "pending") break;
    if (absl::Status st = pause("the order to be ready"); !st.ok()) return st;
  }
  if (order->status == "ready") {
    order = client.finalize(*order, *csr);
    if (!order.ok()) return order.status();
  }
  while (order->status == "processing") {
    if (absl::Status st = pause("the certificate"); !st.ok()) return st;
    order = client.getOrder(order->url);
    if (!order.ok()) return order.status();
  }
  if (order->status != "valid" || order->certificate.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ACME: the order for ", what, " is ", order->status, " ", order->error));
  }
  absl::StatusOr<std::string> chain = client.downloadCertificate(order->certificate);
  if (!chain.ok()) return chain.status();
  absl::StatusOr<std::string> keyPem = tls::keyToPem(key.get());
  if (!keyPem.ok()) return keyPem.status();
  return tls::parsePem(*chain, *keyPem, absl::StrCat("the certificate the CA issued for ", what));
}

}  // namespace derpd::acme
