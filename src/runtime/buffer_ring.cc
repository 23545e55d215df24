#include "runtime/buffer_ring.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/io_ring.h"

namespace derpd {
namespace {

// Newer than Debian 12's liburing 2.3 headers; the values are the kernel's ABI.
constexpr uint16_t kPbufRingInc = 2;            // IOU_PBUF_RING_INC (Linux 6.12)
constexpr uint32_t kCqeBufMore = 1U << 4;       // IORING_CQE_F_BUF_MORE

}  // namespace

absl::StatusOr<std::unique_ptr<BufferRing>> BufferRing::create(io_uring* ring, uint16_t groupId,
                                                               uint16_t count, uint32_t size,
                                                               bool incremental) {
  if (count == 0 || (count & (count - 1)) != 0) {
    return absl::InvalidArgumentError("buffer ring count must be a power of two");
  }
  std::unique_ptr<BufferRing> b(new BufferRing());
  b->ring_ = ring;
  b->groupId_ = groupId;
  b->count_ = count;
  b->size_ = size;
  b->ringBytes_ = sizeof(io_uring_buf) * count;
  void* mem = mmap(nullptr, b->ringBytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (mem == MAP_FAILED) return absl::ResourceExhaustedError("mmap buffer ring");
  b->br_ = static_cast<io_uring_buf_ring*>(mem);
  b->poolBytes_ = static_cast<size_t>(count) * size;
  mem = mmap(nullptr, b->poolBytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return absl::ResourceExhaustedError("mmap receive buffers");
  b->base_ = static_cast<uint8_t*>(mem);

  io_uring_buf_ring_init(b->br_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(b->br_);
  reg.ring_entries = count;
  reg.bgid = groupId;
  int err = -EINVAL;
  if (incremental && !ioUringOption("whole")) {
    reg.pad = kPbufRingInc;  // the kernel's `flags` (liburing 2.3 calls it pad)
    err = io_uring_register_buf_ring(ring, &reg, 0);
    b->incremental_ = err == 0;
    if (b->incremental_) b->offsets_.assign(count, 0);
  }
  if (err == -EINVAL) {  // not asked for, or a kernel without it
    reg.pad = 0;
    err = io_uring_register_buf_ring(ring, &reg, 0);
  }
  if (err != 0) {
    return absl::UnavailableError(
        absl::StrCat("io_uring_register_buf_ring: ", strerror(-err)));
  }
  for (uint16_t i = 0; i < count; i++) {
    io_uring_buf_ring_add(b->br_, b->buffer(i), size, i, io_uring_buf_ring_mask(count), i);
  }
  io_uring_buf_ring_advance(b->br_, count);
  return b;
}

BufferRing::~BufferRing() {
  if (br_ != nullptr) {
    io_uring_unregister_buf_ring(ring_, groupId_);
    munmap(br_, ringBytes_);
  }
  if (base_ != nullptr) munmap(base_, poolBytes_);
}

uint8_t* BufferRing::consume(uint16_t bid, size_t n, uint32_t cqeFlags, bool& done) {
  if (!incremental_) {
    done = true;
    return buffer(bid);
  }
  uint8_t* p = buffer(bid) + offsets_[bid];
  done = !(cqeFlags & kCqeBufMore);
  offsets_[bid] = done ? 0 : offsets_[bid] + static_cast<uint32_t>(n);
  return p;
}

void BufferRing::recycle(uint16_t bid) {
  io_uring_buf_ring_add(br_, buffer(bid), size_, bid, io_uring_buf_ring_mask(count_), pending_);
  pending_++;
}

void BufferRing::commit() {
  if (pending_ == 0) return;
  io_uring_buf_ring_advance(br_, pending_);
  pending_ = 0;
}

}  // namespace derpd
