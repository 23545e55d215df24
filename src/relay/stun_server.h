// StunServer: one shard's STUN responder on its own SO_REUSEPORT UDP socket.
//
// Datagrams arrive through a multishot recvmsg from a provided-buffer ring (no
// allocation, no copy before parsing); answers are built into a fixed array
// and sent with one sendmmsg per loop turn. Nothing is logged per datagram.
// Owned by a ShardServer; only its thread calls it.
#pragma once

#include <sys/socket.h>

#include <array>
#include <memory>

#include "absl/status/status.h"
#include "base/unique_fd.h"
#include "relay/counters.h"
#include "runtime/buffer_ring.h"
#include "runtime/io_ring.h"
#include "stun/stun.h"

namespace derpd::relay {

class StunServer final : public Completion {
 public:
  StunServer(UniqueFd socket, ShardCounters& counters);
  // On the shard thread, with its ring.
  absl::Status init(IoRing& ring, uint16_t bufferGroup);
  void start();
  // Sends the answers built this turn and returns receive buffers; once per turn.
  void flush();
  void stop();

  void complete(int res, uint32_t flags) override;

 private:
  static constexpr size_t kBatch = 64;
  void arm();
  void answer(const uint8_t* data, size_t len, const sockaddr* from, socklen_t fromLen);

  UniqueFd socket_;
  ShardCounters& counters_;
  IoRing* ring_ = nullptr;
  std::unique_ptr<BufferRing> buffers_;
  msghdr recvTemplate_{};  // tells the kernel how much room name/control take
  bool armed_ = false;
  bool stopping_ = false;

  // Answers of this turn.
  std::array<std::array<uint8_t, stun::kMaxResponseLen>, kBatch> out_{};
  std::array<sockaddr_storage, kBatch> peers_{};
  std::array<iovec, kBatch> iov_{};
  std::array<mmsghdr, kBatch> msgs_{};
  size_t pending_ = 0;
};

}  // namespace derpd::relay
