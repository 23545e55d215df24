// The harness's view of the DERP byte stream: reads what the client library
// decrypted (or read) into a 256 KiB buffer and hands each complete frame to a
// callback, and writes SendPacket frames with a send timestamp (CLOCK_MONOTONIC
// ns, the first 8 bytes of the payload). One per connection and thread.
#pragma once

#include <time.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "client/derp_client.h"
#include "derp/frame.h"

namespace derpd::bench {

inline int64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Where the payload starts in a SendPacket or RecvPacket frame (header, key).
inline constexpr size_t kPayloadOffset = derp::kFrameHeaderLen + derp::kKeyLen;

// Appends a SendPacket frame to `dst` carrying `payload` to `out`.
inline void appendSendPacket(std::vector<uint8_t>& out, const derp::NodeKey& dst,
                             std::span<const uint8_t> payload) {
  const size_t at = out.size();
  out.resize(at + kPayloadOffset + payload.size());
  derp::writeFrameHeader(out.data() + at, derp::FrameType::kSendPacket,
                         static_cast<uint32_t>(derp::kKeyLen + payload.size()));
  std::memcpy(out.data() + at + derp::kFrameHeaderLen, dst.bytes.data(), derp::kKeyLen);
  if (!payload.empty()) std::memcpy(out.data() + at + kPayloadOffset, payload.data(), payload.size());
}

// Writes `ns` as the timestamp of the frame starting at `frame`.
inline void stampFrame(uint8_t* frame, int64_t ns) {
  std::memcpy(frame + kPayloadOffset, &ns, sizeof(ns));
}

// The timestamp in a RecvPacket body (source key, then the payload).
inline int64_t stampOf(std::span<const uint8_t> recvBody) {
  int64_t ns = 0;
  if (recvBody.size() >= derp::kKeyLen + sizeof(ns)) {
    std::memcpy(&ns, recvBody.data() + derp::kKeyLen, sizeof(ns));
  }
  return ns;
}

class FrameScanner {
 public:
  FrameScanner() : buf_(256 * 1024) {}
  // Reads once (waiting up to `timeout`), then calls fn(type, body) for each
  // complete frame. DeadlineExceeded when nothing arrived.
  template <typename Fn>
  absl::Status readOnce(client::DerpClient& c, Nanos timeout, Fn&& fn) {
    absl::StatusOr<size_t> n = c.recvRaw(std::span<uint8_t>(buf_).subspan(have_), timeout);
    if (!n.ok()) return n.status();
    have_ += *n;
    size_t off = 0;
    while (have_ - off >= derp::kFrameHeaderLen) {
      auto h = derp::decodeFrameHeader({buf_.data() + off, have_ - off});
      if (!h) return absl::DataLossError("bad frame header");
      const size_t total = derp::kFrameHeaderLen + h->length;
      if (total > buf_.size()) return absl::DataLossError("frame larger than the buffer");
      if (have_ - off < total) break;
      fn(h->type, std::span<const uint8_t>(buf_.data() + off + derp::kFrameHeaderLen, h->length));
      off += total;
    }
    std::memmove(buf_.data(), buf_.data() + off, have_ - off);
    have_ -= off;
    return absl::OkStatus();
  }

 private:
  std::vector<uint8_t> buf_;
  size_t have_ = 0;
};

}  // namespace derpd::bench
