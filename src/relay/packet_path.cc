// ShardServer's packet path: a SendPacket becomes a RecvPacket in place and
// goes to its destination's queue on this shard, through the mailbox to
// another shard, or to the mesh peer that has the key. No copy, no allocation.
#include <cstring>

#include "derp/frame.h"
#include "relay/server_session.h"
#include "relay/shard_server.h"

namespace derpd::relay {

// Here, beside deliver() (once per packet), so that it is inlined there.
Connection* ShardServer::find(uint32_t idx, uint32_t gen) {
  if (idx >= conns_.size() || gens_[idx] != gen || !conns_[idx]) return nullptr;
  Connection* c = conns_[idx].get();
  return c->state == Connection::State::kClosing ? nullptr : c;
}

void ShardServer::onSendPacket(Connection& c, ClientState& client, PacketBuf* b) {
  // b holds the whole SendPacket frame: header(5) dst(32) payload. It becomes
  // the RecvPacket frame in place: same length, the source key where the
  // destination was. From here on its bytes are never copied.
  uint8_t* d = b->bytes();
  size_t payload = c.reader.curLen - derp::kKeyLen;
  derp::NodeKey dst;
  std::memcpy(dst.bytes.data(), d + derp::kFrameHeaderLen, derp::kKeyLen);
  bool disco = derp::isDiscoPacket({d + derp::kFrameHeaderLen + derp::kKeyLen, payload});
  counters_.packetsReceived.add();
  counters_.bytesReceived.add(payload);
  if (disco) counters_.discoPacketsReceived.add();
  d[0] = static_cast<uint8_t>(derp::FrameType::kRecvPacket);
  std::memcpy(d + derp::kFrameHeaderLen, client.key.bytes.data(), derp::kKeyLen);
  b->length = static_cast<uint32_t>(derp::kFrameHeaderLen + c.reader.curLen);
  b->flags = kBufIsPacket | (disco ? kBufIsDisco : 0);

  if (client.mayBeDuplicate) noteDuplicateSend(c);

  const ConnRef* to = directory().lookup(dst);
  if (to == nullptr && shared_.mesh != nullptr) {
    if (const MeshRef* peer = directory().lookupRemote(dst)) {
      forward(*peer, dst, b);
      return;
    }
  }
  if (to == nullptr && directory().instances(dst) > 0) {
    counters_.drop(DropReason::kDupClient, disco);  // its connections fought (derper's name)
    releaseBuf(b);
    return;
  }
  if (to == nullptr) {
    counters_.drop(DropReason::kUnknownDest, disco);
    releaseBuf(b);
    // Rate-limited like derper: 3 at once, then one per second.
    Nanos now = clock_.now();
    client.peerGoneTokens =
        std::min(3.0, client.peerGoneTokens + static_cast<double>(now - client.peerGoneRefill) /
                                                  static_cast<double>(kSecond));
    client.peerGoneRefill = now;
    if (client.peerGoneTokens >= 1.0) {
      client.peerGoneTokens -= 1.0;
      counters_.peerGoneNotHere.add();
      queueFrame(c, derp::PeerGoneFrame{dst, derp::PeerGoneReason::kNotHere});
    }
    return;
  }
  if (!client.haveLastDst || !(client.lastDst == dst)) {
    client.haveLastDst = true;
    client.lastDst = dst;
    client.sentTo.insert(dst);
  }
  relay(*to, b);
}

// Hands a RecvPacket frame to its destination's shard.
void ShardServer::relay(const ConnRef& to, PacketBuf* b) {
  if (to.shard == id_) {
    counters_.relayedLocal.add();
    deliver(to, b);
    return;
  }
  counters_.relayedCrossShard.add();
  mailPacket(to.shard, mail(kMailPacket, to.idx, to.gen, b));
}

void ShardServer::deliver(const ConnRef& ref, PacketBuf* b) {
  bool disco = b->flags & kBufIsDisco;
  Connection* c = find(ref.idx, ref.gen);
  if (c == nullptr) {
    counters_.drop(DropReason::kStaleGeneration, disco);
    releaseBuf(b);
    return;
  }
  enqueuePacket(*c, b);
}

void ShardServer::enqueuePacket(Connection& c, PacketBuf* b) {
  bool disco = b->flags & kBufIsDisco;
  if (!clientOf(c).registered || c.state == Connection::State::kClosing) {
    counters_.drop(DropReason::kGoneDisconnected, disco);
    releaseBuf(b);
    return;
  }
  SendQueue& q = disco ? c.disco : c.packets;
  // A full queue is written out now, if the socket takes it, before anything
  // is dropped: a burst of receives in one turn must not overrun it.
  if (q.size() >= q.maxPackets() && !c.sending) {
    startWrite(c);
    if (c.state == Connection::State::kClosing) {  // the write failed
      counters_.drop(DropReason::kWriteError, disco);
      releaseBuf(b);
      return;
    }
  }
  PacketBuf* dropped = q.push(b);
  while (dropped != nullptr) {
    PacketBuf* next = dropped->next;
    counters_.drop(DropReason::kQueueHead, disco);
    releaseBuf(dropped);
    dropped = next;
  }
  markDirty(c);
}

}  // namespace derpd::relay
