// PacketPool: a shard's allocator of packet buffers.
//
// Each shard owns one pool. Frames being reassembled, packets waiting in send queues and
// packets handed to another shard all live in PacketBufs from the pool of the shard that
// received them. Ownership of a buffer moves with it (to a send queue, through a cross-shard
// ring), but only the owning shard's thread may call allocate() or release(): a buffer used up
// on another shard travels back through the reverse ring before it is released.
//
// Buffers come in a few size classes and are carved from slabs (one allocation holding several
// buffers of a class). Released buffers go onto the class's free list, so once the pool has
// grown to the shard's working set, allocate() and release() are a few pointer moves and never
// call malloc. trim(), called now and then (not on the packet path), gives slabs whose buffers
// are all free back to the system beyond a spare per class: memory a burst of one class took
// (64 KiB bodies from a flood) can then serve another.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace derpd {

struct PacketSlab;

// The header in front of a packet's bytes, in the same allocation. Not constructible by users:
// only a PacketPool makes them.
struct alignas(16) PacketBuf {
  PacketBuf* next;      // intrusive link for free lists and queues; owned by whoever holds b
  uint32_t capacity;    // bytes available at data()
  uint32_t length;      // bytes in use; the holder maintains it
  uint16_t ownerShard;  // which shard's pool it returns to
  uint8_t sizeClass;    // index of the pool's class it came from
  uint8_t flags;        // free for the user; cleared by allocate()
  // Where the bytes in use begin within data(): room left in front lets a holder
  // prepend a header without copying what follows. Cleared by allocate().
  uint16_t start;
  uint8_t fromReserve;  // 1: a reserve buffer (returns to the reserve); set by the pool
  uint8_t unused_;
  struct PacketSlab* slab;  // the slab it was carved from; set by the pool

  // The buffer, 16-byte aligned, right after the header.
  uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(this + 1); }
  // The bytes in use: `length` of them from here.
  uint8_t* bytes() { return data() + start; }
  const uint8_t* bytes() const { return data() + start; }
};
static_assert(sizeof(PacketBuf) % 16 == 0, "data() must stay 16-byte aligned");

class PacketPool {
 public:
  // Data capacities of the classes, smallest first. 2 KiB holds a 1280 B packet inside a DERP
  // frame with room for headers; the largest holds the largest DERP frame, a ForwardPacket
  // (5 byte frame header + two 32 byte keys + 64 KiB payload), rounded up to 16.
  static constexpr std::array<uint32_t, 3> kClassCapacities = {2048, 16384, 65536 + 128};
  static constexpr size_t kClassCount = kClassCapacities.size();
  static constexpr size_t kMaxBufferBytes = kClassCapacities.back();
  // The reserve per class: 64 x 2 KiB and 16 x 16 KiB (384 KiB), none of the largest.
  static constexpr std::array<uint32_t, 3> kReserveBuffers = {64, 16, 0};

  // The capacity of the buffer allocate(bytes) hands out (0: too large for any).
  static constexpr size_t capacityFor(size_t bytes) {
    for (uint32_t c : kClassCapacities) {
      if (c >= bytes) return c;
    }
    return 0;
  }

  // `maxBytes` caps the slab memory the pool may hold; allocate() fails beyond it.
  explicit PacketPool(uint16_t shard, size_t maxBytes = 256 << 20);
  // Frees every slab. Buffers still out (in queues or rings) become dangling, so the shard
  // must collect them before destroying its pool.
  ~PacketPool();
  PacketPool(const PacketPool&) = delete;
  PacketPool& operator=(const PacketPool&) = delete;

  // A buffer with capacity >= bytes, length, flags and start 0, or nullptr if bytes exceeds
  // kMaxBufferBytes or growing would pass the cap. `reserved` (control frames, which must not
  // be lost to a pool that packets filled): past the cap, from a small reserve set aside for
  // them (kReserveBuffers of the class, allocated when first needed, outside the cap).
  PacketBuf* allocate(size_t bytes, bool reserved = false);
  // A buffer larger than every class (up to kMaxOversizeBytes), for the rare
  // frame that may be: a ClientInfo up to derper's 256 KiB. One allocation
  // from the system each, freed again by release(); outside the cap, so the
  // caller bounds them (the shard's pre-authentication budget). nullptr
  // past kMaxOversizeBytes or when the system has no memory.
  static constexpr size_t kMaxOversizeBytes = (256 << 10) + 64;  // with the frame header
  PacketBuf* allocateOversize(size_t bytes);
  // Returns `b` to its class's free list. b->ownerShard must be this pool's shard.
  void release(PacketBuf* b);

  static constexpr uint8_t kOversizeClass = 0xff;  // PacketBuf::sizeClass of allocateOversize's

  uint16_t shard() const { return shard_; }
  // Slab memory obtained from the system so far (never decreases).
  size_t bytesAllocated() const { return bytesAllocated_; }
  // Buffers handed out and not yet released.
  size_t inUse() const { return inUse_; }
  // allocate() calls of each class that failed because the cap was reached.
  const std::array<uint64_t, kClassCount>& failures() const { return failures_; }
  // Frees every slab whose buffers are all free, keeping up to keepBytes of such slabs per
  // class (so a steady load does not free and regrow). O(free buffers + slabs). Returns the
  // bytes given back.
  size_t trim(size_t keepBytes);

 private:
  using Slab = PacketSlab;
  // Adds a slab of class `sizeClass` to its free list (or, reserve: the class's whole
  // reserve to the reserve list); false if the cap forbids it.
  bool grow(size_t sizeClass, bool reserve = false);

  const uint16_t shard_;
  const size_t maxBytes_;
  size_t bytesAllocated_ = 0;
  size_t inUse_ = 0;
  std::array<PacketBuf*, kClassCount> freeLists_{};
  std::array<PacketBuf*, kClassCount> reserveLists_{};
  std::array<bool, kClassCount> reserveGrown_{};
  std::array<uint64_t, kClassCount> failures_{};
  Slab* slabs_ = nullptr;  // every slab, linked through its header, freed by the destructor
};

}  // namespace derpd
