// The requests derpd makes to verify a client and the verdicts it draws from
// the answers: derper's semantics, case by case.
#include "verify/verdicts.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace derpd::verify {
namespace {

using relay::RejectReason;

derp::NodeKey testKey() {
  derp::NodeKey k;
  for (size_t i = 0; i < k.bytes.size(); i++) k.bytes[i] = static_cast<uint8_t>(i);
  return k;
}

client::HttpResponse response(int status, std::string body) {
  client::HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

TEST(VerdictsTest, WhoisRequestIsTheLocalApiClients) {
  client::HttpRequest r = whoisRequest(testKey(), "/run/ts.sock", 5 * kSecond);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.url, absl::StrCat("http://local-tailscaled.sock/localapi/v0/whois?addr=nodekey%3A",
                                testKey().hex()));
  EXPECT_EQ(r.unixSocket, "/run/ts.sock");
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Tailscale-Cap");
  EXPECT_EQ(r.timeout, 5 * kSecond);
}

TEST(VerdictsTest, WhoisAnswers) {
  EXPECT_TRUE(whoisVerdict(response(200, R"({"Node":{"ID":1}})")).admit);
  relay::Verdict nf = whoisVerdict(response(404, "no match for node key\n"));
  EXPECT_FALSE(nf.admit);
  EXPECT_EQ(nf.reason, RejectReason::kNotInTailnet);
  relay::Verdict old = whoisVerdict(response(400, "invalid 'addr' parameter\n"));
  EXPECT_FALSE(old.admit);
  EXPECT_EQ(old.reason, RejectReason::kTailscaledTooOld);
  relay::Verdict err = whoisVerdict(response(500, R"({"error":"backend not running"})"));
  EXPECT_FALSE(err.admit);
  EXPECT_EQ(err.reason, RejectReason::kTailscaledError);
  EXPECT_NE(err.detail.find("backend not running"), std::string::npos) << err.detail;
  relay::Verdict down = whoisVerdict(absl::UnavailableError("connect: no such file"));
  EXPECT_FALSE(down.admit);
  EXPECT_EQ(down.reason, RejectReason::kTailscaledError);
}

TEST(VerdictsTest, AdmissionRequestBody) {
  std::array<uint8_t, 16> v4{};
  v4[10] = v4[11] = 0xff;
  v4[12] = 192;
  v4[15] = 7;
  client::HttpRequest r = admissionRequest("http://127.0.0.1:9/verify", testKey(), v4, 5 * kSecond);
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.body, absl::StrCat(R"({"NodePublic":"nodekey:)", testKey().hex(),
                                 R"(","Source":"192.0.0.7"})"));
  EXPECT_EQ(r.maxBodyBytes, 4096u);
  EXPECT_TRUE(r.truncateBody);
  std::array<uint8_t, 16> v6{};
  v6[0] = 0x20;
  v6[1] = 0x01;
  v6[2] = 0x0d;
  v6[3] = 0xb8;
  v6[15] = 1;
  EXPECT_NE(admissionRequest("http://x/", testKey(), v6, kSecond).body.find(R"("2001:db8::1")"),
            std::string::npos);
}

TEST(VerdictsTest, AdmissionAnswers) {
  struct Case {
    int status;
    std::string body;
    bool admit;
    RejectReason reason;
  };
  const Case cases[] = {
      {200, R"({"Allow":true})", true, {}},
      {200, R"({"allow":true})", true, {}},  // Go matches field names in any case
      {200, R"( {"Allow": true, "Note": {"Allow": false}, "List": [1, {"x": null}]} )", true, {}},
      {200, R"({"Allow":true} and then anything)", true, {}},  // the first value only
      {200, R"({"Allow":false,"Allow":true})", true, {}},      // the last one wins
      {200, R"({"Allow":true,"Allow":false})", false, RejectReason::kUrlDenied},
      {200, R"({"Allow":false})", false, RejectReason::kUrlDenied},
      {200, R"({})", false, RejectReason::kUrlDenied},
      {200, R"(null)", false, RejectReason::kUrlDenied},
      {200, R"({"Allow":null})", false, RejectReason::kUrlDenied},
      {200, R"({"Other":{"Allow":true}})", false, RejectReason::kUrlDenied},
      {200, R"({"Allow":"yes"})", false, RejectReason::kUrlBadReply},
      {200, R"({"Allow":1})", false, RejectReason::kUrlBadReply},
      {200, R"(true)", false, RejectReason::kUrlBadReply},
      {200, R"([{"Allow":true}])", false, RejectReason::kUrlBadReply},
      {200, R"(<html>Allow</html>)", false, RejectReason::kUrlBadReply},
      {200, "", false, RejectReason::kUrlBadReply},
      // What a 4 KiB read leaves of a longer reply.
      {200, R"({"Pad":")" + std::string(4090, 'x'), false, RejectReason::kUrlBadReply},
      {500, R"({"Allow":true})", false, RejectReason::kUrlStatus},
      {403, "", false, RejectReason::kUrlStatus},
  };
  for (const Case& c : cases) {
    for (bool failOpen : {true, false}) {
      relay::Verdict v = admissionVerdict(response(c.status, c.body), failOpen);
      EXPECT_EQ(v.admit, c.admit) << c.status << " " << c.body.substr(0, 60);
      if (!c.admit) {
        EXPECT_EQ(v.reason, c.reason) << c.body.substr(0, 60) << ": " << v.detail;
      }
    }
  }
  // No answer at all: the one case fail-open decides.
  EXPECT_TRUE(admissionVerdict(absl::UnavailableError("connection refused"), true).admit);
  relay::Verdict closed = admissionVerdict(absl::DeadlineExceededError("timeout"), false);
  EXPECT_FALSE(closed.admit);
  EXPECT_EQ(closed.reason, RejectReason::kUrlUnreachable);
}

}  // namespace
}  // namespace derpd::verify
