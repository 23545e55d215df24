// Small helpers shared by the integration tests: status assertions, client
// options for a local derpd, and payloads that say where they came from.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/derp_client.h"
#include "gtest/gtest.h"

#define DERPD_CONCAT_INNER(a, b) a##b
#define DERPD_CONCAT(a, b) DERPD_CONCAT_INNER(a, b)

// ASSERT_OK(status): fails the test with the status message.
#define ASSERT_OK(expr)                                        \
  do {                                                         \
    const ::absl::Status derpd_st_ = (expr);                   \
    ASSERT_TRUE(derpd_st_.ok()) << #expr << ": " << derpd_st_; \
  } while (0)

#define EXPECT_OK(expr)                                        \
  do {                                                         \
    const ::absl::Status derpd_st_ = (expr);                   \
    EXPECT_TRUE(derpd_st_.ok()) << #expr << ": " << derpd_st_; \
  } while (0)

// ASSERT_OK_AND_ASSIGN(lhs, statusor_expr): unwraps or fails the test.
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(DERPD_CONCAT(derpd_so_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr)         \
  auto tmp = (expr);                                      \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status(); \
  lhs = std::move(tmp).value()

namespace derpd::testing {

// Raises this process's open-file limit (a derpd it starts inherits it).
inline absl::Status ensureFileLimit(rlim_t needed) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return absl::InternalError("getrlimit");
  if (lim.rlim_cur >= needed) return absl::OkStatus();
  lim.rlim_cur = needed;
  if (lim.rlim_max < needed) lim.rlim_max = needed;  // only root may do this
  if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot raise RLIMIT_NOFILE to ", needed, " (hard limit too low)"));
  }
  return absl::OkStatus();
}


inline client::ClientOptions clientOptions(uint16_t port) {
  client::ClientOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  return o;
}

inline absl::StatusOr<std::unique_ptr<client::DerpClient>> connectClient(uint16_t port) {
  return client::DerpClient::connect(clientOptions(port));
}

// max(size, 8) bytes: a 4-byte sequence number, a 4-byte tag, then a pattern derived
// from both, so any corruption or mix-up shows.
inline std::vector<uint8_t> taggedPayload(uint32_t seq, uint32_t tag, size_t size) {
  std::vector<uint8_t> p(std::max<size_t>(size, 8));
  std::memcpy(p.data(), &seq, 4);
  std::memcpy(p.data() + 4, &tag, 4);
  for (size_t i = 8; i < p.size(); ++i) p[i] = static_cast<uint8_t>(seq * 31 + tag * 7 + i);
  return p;
}

inline uint32_t payloadSeq(const std::vector<uint8_t>& p) {
  uint32_t seq = 0;
  if (p.size() >= 4) std::memcpy(&seq, p.data(), 4);
  return seq;
}

inline uint32_t payloadTag(const std::vector<uint8_t>& p) {
  uint32_t tag = 0;
  if (p.size() >= 8) std::memcpy(&tag, p.data() + 4, 4);
  return tag;
}

}  // namespace derpd::testing
