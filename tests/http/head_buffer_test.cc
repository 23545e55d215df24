#include "http/head_buffer.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace derpd::http {
namespace {

void add(HeadBuffer& b, std::string_view s) {
  b.append(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(HeadBufferTest, AHeadInOneReadLeavesTheBytesBehindIt) {
  HeadBuffer b;
  const std::string head = "GET /derp HTTP/1.1\r\nHost: a\r\nUpgrade: DERP\r\n\r\n";
  add(b, head + "\x02\x00\x00\x00\x01");
  ParseResult r = b.next();
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.path, "/derp");
  EXPECT_EQ(r.request.headLength, head.size());
  EXPECT_EQ(b.fromLastAppend(r.request.headLength), head.size());
}

TEST(HeadBufferTest, AHeadSentAByteAtATimeCompletesOnItsLastByte) {
  HeadBuffer b;
  const std::string head = "GET /generate_204 HTTP/1.1\r\nHost: derp.example.com\r\n\r\n";
  for (size_t i = 0; i + 1 < head.size(); i++) {
    add(b, head.substr(i, 1));
    ASSERT_EQ(b.next().status, ParseStatus::kNeedMore) << "after byte " << i;
  }
  add(b, head.substr(head.size() - 1));
  ParseResult r = b.next();
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.header("host"), "derp.example.com");
  EXPECT_EQ(b.fromLastAppend(r.request.headLength), 1u);
}

TEST(HeadBufferTest, ABlankLineSplitAcrossReadsIsFound) {
  for (std::string_view end : {"\r\n\r\n", "\n\n"}) {
    for (size_t split = 1; split < end.size(); split++) {
      HeadBuffer b;
      add(b, "GET / HTTP/1.1\r\nHost: a");
      add(b, end.substr(0, split));
      ASSERT_EQ(b.next().status, ParseStatus::kNeedMore);
      add(b, end.substr(split));
      EXPECT_EQ(b.next().status, ParseStatus::kComplete) << "split at " << split;
    }
  }
}

TEST(HeadBufferTest, GarbageIsRefusedOnceItsFirstLineEnds) {
  HeadBuffer b;
  add(b, "\x16\x03\x01 not http");
  EXPECT_EQ(b.next().status, ParseStatus::kNeedMore);
  add(b, "\r\nHost: a\r\n");  // no blank line yet
  EXPECT_EQ(b.next().status, ParseStatus::kBadRequest);
}

TEST(HeadBufferTest, PipelinedRequestsComeOutInTurn) {
  HeadBuffer b;
  const std::string first = "GET /generate_204 HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string second = "GET /derp/probe HTTP/1.1\r\nHost: a\r\n\r\n";
  add(b, first + second + "GET /");
  ParseResult r = b.next();
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.path, "/generate_204");
  b.consume(r.request.headLength);
  r = b.next();  // no new bytes: the second head was already here
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.path, "/derp/probe");
  b.consume(r.request.headLength);
  EXPECT_EQ(b.size(), 5u);
  EXPECT_EQ(b.next().status, ParseStatus::kNeedMore);
  add(b, "derp HTTP/1.1\r\nHost: a\r\n\r\nXY");
  r = b.next();
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.path, "/derp");
  // The third head began in the read before: only its tail came in this one.
  EXPECT_EQ(b.fromLastAppend(r.request.headLength), r.request.headLength - 5);
}

TEST(HeadBufferTest, AHeadOverTheLimitIsTooLarge) {
  HeadBuffer b;
  add(b, "GET / HTTP/1.1\r\n");
  std::string header = "X-Pad: " + std::string(1000, 'a') + "\r\n";
  ParseStatus last = ParseStatus::kNeedMore;
  for (int i = 0; i < 20 && last == ParseStatus::kNeedMore; i++) {
    add(b, header);
    last = b.next().status;
  }
  EXPECT_EQ(last, ParseStatus::kHeadTooLarge);
}

TEST(HeadBufferTest, ReleaseFreesTheMemory) {
  HeadBuffer b;
  add(b, std::string(4000, 'x'));
  EXPECT_GE(b.capacity(), 4000u);
  b.release();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.capacity(), 0u);
}

}  // namespace
}  // namespace derpd::http
