#include "relay/mesh_state.h"

#include "absl/strings/str_cat.h"

namespace derpd::relay {

MeshLinkStats* MeshStatsRegistry::acquire(const std::string& label) {
  std::lock_guard lock(mu_);
  for (MeshLinkStats& s : links_) {
    if (s.label == label) {
      s.live.store(true, std::memory_order_relaxed);
      s.movedTo.store(nullptr, std::memory_order_relaxed);
      return &s;
    }
  }
  MeshLinkStats& s = links_.emplace_back();
  s.label = label;
  return &s;
}

void MeshStatsRegistry::learnedKey(MeshLinkStats* s, const derp::NodeKey& key) {
  std::lock_guard lock(mu_);
  s->peerKey = key;
  s->haveKey = true;
  const std::string label = key.toString();
  for (MeshLinkStats& early : links_) {
    if (&early == s || early.label != label || !early.live.load(std::memory_order_relaxed)) {
      continue;
    }
    s->forwardedInPackets.fetch_add(early.forwardedInPackets.exchange(0));
    s->forwardedInBytes.fetch_add(early.forwardedInBytes.exchange(0));
    early.live.store(false, std::memory_order_relaxed);
    early.movedTo.store(s, std::memory_order_release);
  }
}

MeshLinkStats* MeshStatsRegistry::forIncoming(const derp::NodeKey& key) {
  {
    std::lock_guard lock(mu_);
    for (MeshLinkStats& s : links_) {
      if (s.haveKey && s.peerKey == key && s.live.load(std::memory_order_relaxed)) return &s;
    }
  }
  return acquire(key.toString());
}

void MeshStatsRegistry::render(std::string& out) const {
  using Get = uint64_t (*)(const MeshLinkStats&);
  struct Family {
    const char* name;
    const char* type;
    const char* help;
    Get get;
  };
  static constexpr Family kFamilies[] = {
      {"derpd_mesh_peer_up", "gauge", "1 while the link to the mesh peer is up and watching",
       [](const MeshLinkStats& s) { return s.up.get(); }},
      {"derpd_mesh_peer_connects_total", "counter", "handshakes completed with the mesh peer",
       [](const MeshLinkStats& s) { return s.connects.get(); }},
      {"derpd_mesh_peer_keys", "gauge", "client keys the mesh peer reports present",
       [](const MeshLinkStats& s) { return s.keys.get(); }},
      {"derpd_mesh_forwarded_out_packets_total", "counter",
       "packets forwarded to the mesh peer (ForwardPacket)",
       [](const MeshLinkStats& s) { return s.forwardedPackets.get(); }},
      {"derpd_mesh_forwarded_out_bytes_total", "counter",
       "payload bytes forwarded to the mesh peer",
       [](const MeshLinkStats& s) { return s.forwardedBytes.get(); }},
      {"derpd_mesh_forwarded_in_packets_by_peer_total", "counter",
       "ForwardPacket frames received from the mesh peer",
       [](const MeshLinkStats& s) { return s.forwardedInPackets.load(std::memory_order_relaxed); }},
      {"derpd_mesh_forwarded_in_bytes_by_peer_total", "counter",
       "payload bytes of ForwardPacket frames received from the mesh peer",
       [](const MeshLinkStats& s) { return s.forwardedInBytes.load(std::memory_order_relaxed); }},
  };
  std::lock_guard lock(mu_);
  for (const Family& f : kFamilies) {
    absl::StrAppend(&out, "# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name, " ", f.type, "\n");
    for (const MeshLinkStats& s : links_) {
      if (!s.live.load(std::memory_order_relaxed)) continue;
      absl::StrAppend(&out, f.name, "{peer=\"", promLabelValue(s.label), "\"} ", f.get(s), "\n");
    }
  }
  absl::StrAppend(&out,
                  "# HELP derpd_mesh_forward_drops_total packets for a mesh peer dropped, by "
                  "reason\n# TYPE derpd_mesh_forward_drops_total counter\n");
  for (const MeshLinkStats& s : links_) {
    if (!s.live.load(std::memory_order_relaxed)) continue;
    std::string peer = promLabelValue(s.label);
    absl::StrAppend(&out, "derpd_mesh_forward_drops_total{peer=\"", peer,
                    "\",reason=\"queue_head\"} ", s.dropsQueueHead.get(), "\n",
                    "derpd_mesh_forward_drops_total{peer=\"", peer, "\",reason=\"link_down\"} ",
                    s.dropsLinkDown.get(), "\n");
  }
}

std::string MeshStatsRegistry::debugText() const {
  std::string out = "peer\tup\tconnects\tkeys\tforwarded_packets\tforwarded_bytes\t"
                    "drops_queue_head\tdrops_link_down\tforwarded_in_packets\tforwarded_in_bytes\n";
  std::lock_guard lock(mu_);
  for (const MeshLinkStats& s : links_) {
    if (!s.live.load(std::memory_order_relaxed)) continue;
    absl::StrAppend(&out, s.label, "\t", s.up.get(), "\t", s.connects.get(), "\t", s.keys.get(),
                    "\t", s.forwardedPackets.get(), "\t", s.forwardedBytes.get(), "\t",
                    s.dropsQueueHead.get(), "\t", s.dropsLinkDown.get(), "\t",
                    s.forwardedInPackets.load(std::memory_order_relaxed), "\t",
                    s.forwardedInBytes.load(std::memory_order_relaxed), "\n");
  }
  return out;
}

}  // namespace derpd::relay
