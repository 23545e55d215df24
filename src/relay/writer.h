// The writer's shared pieces, for the plain path (connection_io.cc) and the
// TLS transport (tls_transport.cc): which queued frame goes next, and how much a write may
// take at once. Internal to src/relay.
#pragma once

#include <cstddef>
#include <cstdint>

#include "derp/frame.h"
#include "relay/connection.h"
#include "runtime/packet_pool.h"

namespace derpd::relay {

inline constexpr size_t kMaxWriteBytes = 256 * 1024;  // per sendmsg

// The packet bytes a RecvPacket frame carries (without its header and source key).
inline uint32_t payloadBytes(const PacketBuf* b) {
  return b->length - static_cast<uint32_t>(derp::kFrameHeaderLen + derp::kKeyLen);
}

// The next frame the writer may take: control first, then disco, then other
// packets. Until every shard has acknowledged a client's registration, only
// what precedes its held ServerInfo may go. Left queued (peek) or taken.
inline PacketBuf* nextWritable(Connection& c, bool take) {
  SendQueue* queues[] = {&c.control, &c.disco, &c.packets};
  for (SendQueue* q : queues) {
    if (c.writeControlOnly && q != &c.control) break;
    if (!q->empty() && !(q->front()->flags & kBufHold)) return take ? q->pop() : q->front();
  }
  return nullptr;
}

inline PacketBuf* popWritable(Connection& c) { return nextWritable(c, true); }

// Links b behind the chain being written.
inline void appendToChain(Connection& c, PacketBuf* b) {
  b->next = nullptr;
  if (c.writingTail) {
    c.writingTail->next = b;
  } else {
    c.writing = b;
  }
  c.writingTail = b;
  c.writingCount++;
}

}  // namespace derpd::relay
