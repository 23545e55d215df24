// DirectoryReplica: one shard's KeyDirectory and the mail that keeps every
// shard's replica the same.
//
// A shard changes the entries of its own clients only: it applies the change
// to its replica at once and mails it to every other shard, which applies it
// on reading (kMailRegister, kMailUnregister, kMailActivate, kMailDisabled).
// That includes disabling fighters: a fight (kMailDisableDup, from the shard
// that saw it) asks every shard to disable its own instances of the key
// registered by then, and each owner mails its decision, as it does when one
// of its disabled instances is left alone and is enabled again. A decision
// taken on one replica's view and mailed is the same everywhere; a rule
// applied by each replica to its own view is not (the views differ while
// mail is in flight).
// Mail between two shards arrives in the order it was sent; between different
// pairs, in any order. The invariants, which tests/relay/directory_replica_test
// checks over random interleavings with a fake mailbox:
//
//  1. Convergence: once every mail has been read, every replica holds the same
//     instances for every key, and lookup() answers the same on all of them.
//     (Recency is the owner's stamp, carried in the mail, never the order of
//     arrival: KeyDirectory.)
//  2. Acknowledged registration: the owner hears onRegistered for a client
//     only after every other replica has applied its registration, once, and
//     never for a client that left before (its ServerInfo waits for this, so
//     a client is never told it is registered before every shard can route to
//     it).
//  3. No lookup sees a freed entry: a replica never returns an instance of
//     its own shard that has unregistered (it removes its own at once), and a
//     slot reused by a new connection has a new generation, so a stale
//     reference to the old one on another replica never reaches the new one.
//     Once the mail is read, no replica holds a departed instance.
//
// The mesh's remote entries (keys on other nodes) are kept in the same
// KeyDirectory by mesh.cc. Owned by one shard; only its thread may call it.
#pragma once

#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "derp/key.h"
#include "relay/key_directory.h"
#include "relay/mail.h"

namespace derpd::relay {

class DirectoryReplica {
 public:
  // What the replica's owner does with its news.
  class Host {
   public:
    virtual void sendMail(size_t to, const MailMessage& m) = 0;
    // key's instances changed (an add, a removal, a new active one).
    virtual void onInstancesChanged(const derp::NodeKey& key, const KeyDirectory::Change& c) = 0;
    // An instance of key arrived with `info`, or (nullptr) its last one left:
    // what mesh watchers are told.
    virtual void onPresence(const derp::NodeKey& key, const PeerInfo* info) = 0;
    // Every other shard has applied the registration of this shard's (idx, gen).
    virtual void onRegistered(uint32_t idx, uint32_t gen) = 0;

   protected:
    ~Host() = default;
  };

  DirectoryReplica(uint16_t shard, size_t shards, Host& host)
      : shard_(shard), shards_(shards), host_(host) {}

  // Whether a registration waits for the other shards' acknowledgements
  // (onRegistered follows registerLocal) before its client may be told.
  bool waitsForAcks() const { return shards_ > 1; }
  // This shard's client (idx, gen) registered key at `stamp`.
  void registerLocal(const derp::NodeKey& key, uint32_t idx, uint32_t gen, const PeerInfo& info,
                     uint64_t stamp);
  // It left. Returns the change (instances == 0: the key left the node).
  KeyDirectory::Change unregisterLocal(const derp::NodeKey& key, uint32_t idx, uint32_t gen);
  // It sent at `stamp` while another instance of its key was active.
  void activateLocal(const derp::NodeKey& key, uint32_t idx, uint32_t gen, uint64_t stamp) {
    announce(kMailActivate, key, idx, gen, stamp);
  }
  // Its key's instances fight: every one registered by `stamp` is disabled.
  void disableLocal(const derp::NodeKey& key, uint32_t idx, uint32_t gen, uint64_t stamp) {
    announce(kMailDisableDup, key, idx, gen, stamp);
  }

  // Applies a message of one of the kinds above (and kMailRegisterAck).
  // Returns false for any other kind.
  bool onMail(const MailMessage& m);

  const KeyDirectory& directory() const { return directory_; }
  // For the mesh's remote entries.
  KeyDirectory& directory() { return directory_; }
  // Local registrations still waiting for acknowledgements.
  size_t awaitingAcks() const { return pendingAcks_.size(); }

 private:
  static uint64_t slot(uint32_t idx, uint32_t gen) { return uint64_t{idx} << 32 | gen; }
  void broadcast(const MailMessage& m);
  // Mails a change stamped by this shard to every other shard and applies it here.
  void announce(MailKind kind, const derp::NodeKey& key, uint32_t idx, uint32_t gen,
                uint64_t stamp);
  void apply(const derp::NodeKey& key, const KeyDirectory::Change& change);
  // An owner's decisions about its own instances of key.
  void onFight(const derp::NodeKey& key, uint64_t stamp);
  void enableIfAlone(const derp::NodeKey& key);
  void setOwnDisabled(const derp::NodeKey& key, ConnRef ref, bool disabled);

  uint16_t shard_;
  size_t shards_;
  Host& host_;
  KeyDirectory directory_;
  // (idx, gen) of a local registration -> acknowledgements still to come.
  absl::flat_hash_map<uint64_t, uint16_t> pendingAcks_;
};

}  // namespace derpd::relay
