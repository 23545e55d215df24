#include "runtime/packet_pool.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <new>

namespace derpd {

namespace {

// Buffers per slab for each class. Small buffers come in large batches so warm-up is quick;
// large ones in small batches so a shard that rarely sees 64 KiB frames does not hold megabytes
// of them. Each slab is a few hundred KiB.
constexpr std::array<size_t, PacketPool::kClassCount> kBuffersPerSlab = {64, 16, 4};

// Slabs start on a cache line, and so do buffers, since every stride is a multiple of 64:
// a buffer's header never shares a line with its neighbour's tail.
constexpr size_t kSlabAlign = 64;

constexpr size_t strideOf(size_t sizeClass) {
  return (sizeof(PacketBuf) + PacketPool::kClassCapacities[sizeClass] + kSlabAlign - 1) &
         ~(kSlabAlign - 1);
}

}  // namespace

// Sits at the start of each slab, before its buffers.
struct alignas(kSlabAlign) PacketSlab {
  PacketSlab* next;
  size_t bytes;       // of the whole allocation
  uint32_t count;     // buffers carved from it
  uint32_t free = 0;  // trim()'s tally of them on the free list
  uint8_t sizeClass;
  bool reserve;
};

PacketPool::PacketPool(uint16_t shard, size_t maxBytes) : shard_(shard), maxBytes_(maxBytes) {}

PacketPool::~PacketPool() {
  while (slabs_ != nullptr) {
    Slab* slab = slabs_;
    slabs_ = slab->next;
    std::free(slab);
  }
}

PacketBuf* PacketPool::allocate(size_t bytes, bool reserved) {
  size_t sizeClass = 0;
  while (sizeClass < kClassCount && kClassCapacities[sizeClass] < bytes) ++sizeClass;
  if (sizeClass == kClassCount) return nullptr;
  PacketBuf** list = &freeLists_[sizeClass];
  if (*list == nullptr && !grow(sizeClass)) {
    if (reserved) {
      list = &reserveLists_[sizeClass];
      if (*list == nullptr && !reserveGrown_[sizeClass]) grow(sizeClass, true);
    }
    if (*list == nullptr) {
      ++failures_[sizeClass];
      return nullptr;
    }
  }

  PacketBuf* b = *list;
  *list = b->next;
  b->next = nullptr;
  b->length = 0;
  b->flags = 0;
  b->start = 0;
  ++inUse_;
  return b;
}

PacketBuf* PacketPool::allocateOversize(size_t bytes) {
  if (bytes > kMaxOversizeBytes) return nullptr;
  void* mem =
      std::aligned_alloc(alignof(PacketBuf), sizeof(PacketBuf) + ((bytes + 15) & ~size_t{15}));
  if (mem == nullptr) return nullptr;
  PacketBuf* b = new (mem) PacketBuf{};
  b->capacity = static_cast<uint32_t>(bytes);
  b->ownerShard = shard_;
  b->sizeClass = kOversizeClass;
  ++inUse_;
  return b;
}

void PacketPool::release(PacketBuf* b) {
  // Another shard's buffer here would corrupt both pools' accounting: a wiring bug, not input.
  assert(b->ownerShard == shard_);
  assert(inUse_ > 0);
  if (b->sizeClass == kOversizeClass) {
    --inUse_;
    std::free(b);
    return;
  }
  assert(b->sizeClass < kClassCount);
  PacketBuf*& list = b->fromReserve ? reserveLists_[b->sizeClass] : freeLists_[b->sizeClass];
  b->next = list;
  list = b;
  --inUse_;
}

bool PacketPool::grow(size_t sizeClass, bool reserve) {
  const size_t stride = strideOf(sizeClass);
  size_t count = kReserveBuffers[sizeClass];
  if (reserve) {
    reserveGrown_[sizeClass] = true;
    if (count == 0) return false;
  } else {
    const size_t room = maxBytes_ > bytesAllocated_ ? maxBytes_ - bytesAllocated_ : 0;
    if (room < sizeof(Slab) + stride) return false;
    // Near the cap, a partial slab still lets the pool use the memory it is allowed.
    count = std::min(kBuffersPerSlab[sizeClass], (room - sizeof(Slab)) / stride);
  }
  const size_t slabBytes = sizeof(Slab) + count * stride;

  void* memory = std::aligned_alloc(kSlabAlign, slabBytes);  // slabBytes is a multiple of 64
  if (memory == nullptr) return false;
  auto* slab = new (memory) Slab{slabs_, slabBytes, static_cast<uint32_t>(count), 0,
                                 static_cast<uint8_t>(sizeClass), reserve};
  slabs_ = slab;
  bytesAllocated_ += slabBytes;

  auto* base = reinterpret_cast<uint8_t*>(slab + 1);
  // Thread the buffers onto the free list back to front so they are handed out in address
  // order, which keeps a burst of allocations walking memory forwards.
  for (size_t i = count; i-- > 0;) {
    auto* b = new (base + i * stride) PacketBuf{};
    b->capacity = kClassCapacities[sizeClass];
    b->ownerShard = shard_;
    b->sizeClass = static_cast<uint8_t>(sizeClass);
    b->fromReserve = reserve ? 1 : 0;
    b->slab = slab;
    PacketBuf*& list = reserve ? reserveLists_[sizeClass] : freeLists_[sizeClass];
    b->next = list;
    list = b;
  }
  return true;
}

size_t PacketPool::trim(size_t keepBytes) {
  // Tally each slab's buffers on the free lists.
  for (Slab* slab = slabs_; slab != nullptr; slab = slab->next) slab->free = 0;
  for (PacketBuf* list : freeLists_) {
    for (PacketBuf* b = list; b != nullptr; b = b->next) b->slab->free++;
  }
  // Choose the wholly free slabs beyond keepBytes of them per class.
  std::array<size_t, kClassCount> kept{};
  bool any = false;
  for (Slab* slab = slabs_; slab != nullptr; slab = slab->next) {
    if (slab->reserve || slab->free != slab->count) continue;
    if (kept[slab->sizeClass] + slab->bytes <= keepBytes) {
      kept[slab->sizeClass] += slab->bytes;
      slab->free = 0;  // kept: not freed below
      continue;
    }
    any = true;
  }
  if (!any) return 0;
  auto doomed = [](const Slab* slab) { return !slab->reserve && slab->free == slab->count; };
  // Unlink their buffers from the free lists, then the slabs from the pool.
  for (PacketBuf*& list : freeLists_) {
    PacketBuf** link = &list;
    while (*link != nullptr) {
      if (doomed((*link)->slab)) {
        *link = (*link)->next;
      } else {
        link = &(*link)->next;
      }
    }
  }
  size_t freed = 0;
  for (Slab** link = &slabs_; *link != nullptr;) {
    Slab* slab = *link;
    if (!doomed(slab)) {
      link = &slab->next;
      continue;
    }
    *link = slab->next;
    freed += slab->bytes;
    std::free(slab);
  }
  bytesAllocated_ -= freed;
  return freed;
}

}  // namespace derpd
