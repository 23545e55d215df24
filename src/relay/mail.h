// The messages shards send each other through the Mailbox (MailMessage::kind)
// and how one is addressed. Internal to src/relay.
#pragma once

#include <cstdint>

#include "runtime/mailbox.h"

namespace derpd::relay {

enum MailKind : uint8_t {
  kMailPacket = 1,    // ptr: PacketBuf to deliver to (idx, gen); its flags say disco
  kMailReturnBuf,     // ptr: PacketBuf going home to its owner's pool
  kMailRegister,      // key connected at (shard, idx, gen)
  kMailUnregister,    // key's instance at (shard, idx, gen) left
  kMailActivate,      // key's instance at (shard, idx, gen) sent (aux 1: registered) at stamp
  kMailPeerGone,      // tell (idx, gen) that key is gone; aux: reason
  kMailRegisterAck,   // the sender applied the registration of (idx, gen)
  kMailMeshPresent,   // key is present on the peer behind mesh link (shard, idx, gen)
  kMailMeshGone,      // key left the peer behind mesh link (shard, idx, gen)
  kMailMeshLinkDown,  // mesh link (shard, idx, gen) broke: every key it reported goes
  kMailForward,       // ptr: a ForwardPacket frame for this shard's mesh link (idx, gen)
  kMailClosePeer,     // a mesh peer's ClosePeer: close this shard's connections of key
  kMailDisableDup,    // key's instances fought at stamp: owners disable those registered by then
  kMailDisabled,  // key's instance (shard, idx, gen) is disabled (aux 1) or enabled by its owner
};
// kMailRegister carries the client's PeerInfo: addr is its IP, aux its port
// and (<< 16) its PeerPresent flags.

// A message of `kind` from shard `from` about its (idx, gen).
inline MailMessage makeMail(MailKind kind, uint16_t from, uint32_t idx, uint32_t gen,
                            void* ptr = nullptr) {
  MailMessage m;
  m.kind = kind;
  m.shard = from;
  m.idx = idx;
  m.gen = gen;
  m.ptr = ptr;
  return m;
}

}  // namespace derpd::relay
