// BufferRing: a provided-buffer ring for multishot receives.
//
// The kernel picks a buffer only when data arrives, so an idle connection
// holds no receive buffer. The owner copies what it needs out of a buffer and
// recycles it once done with it; commit() publishes recycled buffers to the
// kernel once per loop turn. Owned by one shard; only its thread may call it.
//
// With incremental consumption (IOU_PBUF_RING_INC, Linux 6.12) a completion
// takes only the bytes it received from the current buffer, and the next one
// goes on from there: a 100-byte receive costs 100 bytes of the ring, not a
// whole buffer, so many small receives waiting in the completion queue cannot
// run the ring dry. consume() gives each completion its bytes and says when
// the buffer is done (the kernel stops flagging IORING_CQE_F_BUF_MORE).
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace derpd {

class BufferRing {
 public:
  // count must be a power of two. Memory is page-aligned (liburing 2.3 has no
  // io_uring_setup_buf_ring, so we allocate and register it ourselves).
  // incremental: ask for incremental consumption, and do without where the
  // kernel refuses it (incremental() says which).
  static absl::StatusOr<std::unique_ptr<BufferRing>> create(io_uring* ring, uint16_t groupId,
                                                            uint16_t count, uint32_t size,
                                                            bool incremental = false);
  ~BufferRing();

  uint16_t groupId() const { return groupId_; }
  uint32_t bufferSize() const { return size_; }
  uint16_t count() const { return count_; }
  bool incremental() const { return incremental_; }
  uint8_t* buffer(uint16_t bid) { return base_ + static_cast<size_t>(bid) * size_; }
  // The n bytes a completion (its CQE flags) received into buffer bid; done:
  // the buffer will not be used again until recycled.
  uint8_t* consume(uint16_t bid, size_t n, uint32_t cqeFlags, bool& done);
  void recycle(uint16_t bid);
  void commit();

 private:
  BufferRing() = default;

  io_uring* ring_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  uint8_t* base_ = nullptr;
  size_t ringBytes_ = 0;
  size_t poolBytes_ = 0;
  uint16_t groupId_ = 0;
  uint16_t count_ = 0;
  uint32_t size_ = 0;
  int pending_ = 0;
  bool incremental_ = false;
  std::vector<uint32_t> offsets_;  // incremental: bytes of each buffer consumed so far
};

}  // namespace derpd
