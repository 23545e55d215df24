// BufferRing: a provided-buffer ring for multishot receives.
//
// The kernel picks a buffer only when data arrives, so an idle connection
// holds no receive buffer. The owner copies what it needs out of a buffer and
// recycles it at once; commit() publishes recycled buffers to the kernel once
// per loop turn. Owned by one shard; only its thread may call it.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace derpd {

class BufferRing {
 public:
  // count must be a power of two. Memory is page-aligned (liburing 2.3 has no
  // io_uring_setup_buf_ring, so we allocate and register it ourselves).
  static absl::StatusOr<std::unique_ptr<BufferRing>> create(io_uring* ring, uint16_t groupId,
                                                            uint16_t count, uint32_t size);
  ~BufferRing();

  uint16_t groupId() const { return groupId_; }
  uint32_t bufferSize() const { return size_; }
  uint8_t* buffer(uint16_t bid) { return base_ + static_cast<size_t>(bid) * size_; }
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
};

}  // namespace derpd
