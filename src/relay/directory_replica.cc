#include "relay/directory_replica.h"

#include <optional>

#include "absl/container/inlined_vector.h"

namespace derpd::relay {

void DirectoryReplica::broadcast(const MailMessage& m) {
  for (size_t to = 0; to < shards_; to++) {
    if (to != shard_) host_.sendMail(to, m);
  }
}

void DirectoryReplica::apply(const derp::NodeKey& key, const KeyDirectory::Change& change) {
  host_.onInstancesChanged(key, change);
}

void DirectoryReplica::registerLocal(const derp::NodeKey& key, uint32_t idx, uint32_t gen,
                                     const PeerInfo& info, uint64_t stamp) {
  MailMessage m = makeMail(kMailRegister, shard_, idx, gen);
  m.key = key.bytes;
  m.addr = info.ip;
  m.aux = info.port | (static_cast<uint32_t>(info.flags) << 16);
  broadcast(m);
  // The registration's time follows in its own mail (a register's fields are
  // full): every replica then orders duplicates the same way.
  MailMessage when = makeMail(kMailActivate, shard_, idx, gen);
  when.key = key.bytes;
  when.stamp = stamp;
  when.aux = 1;
  broadcast(when);
  if (waitsForAcks()) pendingAcks_[slot(idx, gen)] = static_cast<uint16_t>(shards_ - 1);
  apply(key, directory_.add(key, ConnRef{shard_, idx, gen}, info, stamp));
  host_.onPresence(key, &info);
}

KeyDirectory::Change DirectoryReplica::unregisterLocal(const derp::NodeKey& key, uint32_t idx,
                                                       uint32_t gen) {
  pendingAcks_.erase(slot(idx, gen));
  MailMessage m = makeMail(kMailUnregister, shard_, idx, gen);
  m.key = key.bytes;
  broadcast(m);
  KeyDirectory::Change change = directory_.remove(key, ConnRef{shard_, idx, gen});
  apply(key, change);
  if (change.instances == 0) host_.onPresence(key, nullptr);
  enableIfAlone(key);
  return change;
}

void DirectoryReplica::announce(MailKind kind, const derp::NodeKey& key, uint32_t idx,
                                uint32_t gen, uint64_t stamp) {
  MailMessage m = makeMail(kind, shard_, idx, gen);
  m.key = key.bytes;
  m.stamp = stamp;
  broadcast(m);
  onMail(m);
}

void DirectoryReplica::setOwnDisabled(const derp::NodeKey& key, ConnRef ref, bool disabled) {
  MailMessage m = makeMail(kMailDisabled, shard_, ref.idx, ref.gen);
  m.key = key.bytes;
  m.aux = disabled ? 1 : 0;
  broadcast(m);
  apply(key, directory_.setDisabled(key, ref, disabled));
}

// A lone connection is never disabled; instances registered after the fight
// (newcomers) are not either.
void DirectoryReplica::onFight(const derp::NodeKey& key, uint64_t stamp) {
  if (directory_.instances(key) < 2) return;
  absl::InlinedVector<ConnRef, 2> fighters;
  directory_.forEachInstance(key, [&](const KeyDirectory::Instance& i) {
    if (i.ref.shard == shard_ && !i.disabled && i.registered <= stamp) fighters.push_back(i.ref);
  });
  for (const ConnRef& ref : fighters) setOwnDisabled(key, ref, true);
}

void DirectoryReplica::enableIfAlone(const derp::NodeKey& key) {
  if (directory_.instances(key) != 1) return;
  std::optional<ConnRef> alone;
  directory_.forEachInstance(key, [&](const KeyDirectory::Instance& i) {
    if (i.ref.shard == shard_ && i.disabled) alone = i.ref;
  });
  if (alone) setOwnDisabled(key, *alone, false);
}

bool DirectoryReplica::onMail(const MailMessage& m) {
  derp::NodeKey key;
  key.bytes = m.key;
  ConnRef ref{m.shard, m.idx, m.gen};
  switch (m.kind) {
    case kMailRegister: {
      PeerInfo info{m.addr, static_cast<uint16_t>(m.aux & 0xffff),
                    static_cast<uint8_t>(m.aux >> 16)};
      apply(key, directory_.add(key, ref, info));
      host_.onPresence(key, &info);
      host_.sendMail(m.shard, makeMail(kMailRegisterAck, shard_, m.idx, m.gen));
      return true;
    }
    case kMailRegisterAck: {
      // Mail about a local registration comes back with our own shard's
      // (idx, gen); a client that has left since has no entry.
      auto it = pendingAcks_.find(slot(m.idx, m.gen));
      if (it != pendingAcks_.end() && --it->second == 0) {
        pendingAcks_.erase(it);
        host_.onRegistered(m.idx, m.gen);
      }
      return true;
    }
    case kMailUnregister: {
      KeyDirectory::Change change = directory_.remove(key, ref);
      apply(key, change);
      if (change.instances == 0) host_.onPresence(key, nullptr);
      enableIfAlone(key);
      return true;
    }
    case kMailActivate:
      apply(key, directory_.activate(key, ref, m.stamp, m.aux == 1));
      return true;
    case kMailDisableDup:
      onFight(key, m.stamp);
      return true;
    case kMailDisabled:
      apply(key, directory_.setDisabled(key, ref, m.aux == 1));
      return true;
    default:
      return false;
  }
}

}  // namespace derpd::relay
