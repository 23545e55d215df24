#include "relay/mesh_state.h"

#include "absl/strings/str_cat.h"

namespace derpd::relay {
namespace {

// A Prometheus label value: backslash, quote and newline escaped.
std::string labelValue(std::string_view v) {
  std::string out;
  for (char ch : v) {
    if (ch == '\\' || ch == '"') out.push_back('\\');
    if (ch == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(ch);
  }
  return out;
}

}  // namespace

MeshLinkStats* MeshStatsRegistry::acquire(const std::string& label) {
  std::lock_guard lock(mu_);
  for (MeshLinkStats& s : links_) {
    if (s.label == label) {
      s.live.store(true, std::memory_order_relaxed);
      return &s;
    }
  }
  MeshLinkStats& s = links_.emplace_back();
  s.label = label;
  return &s;
}

void MeshStatsRegistry::render(std::string& out) const {
  struct Family {
    const char* name;
    const char* type;
    const char* help;
    const Counter MeshLinkStats::*counter;
  };
  static constexpr Family kFamilies[] = {
      {"derpd_mesh_peer_up", "gauge", "1 while the link to the mesh peer is up and watching",
       &MeshLinkStats::up},
      {"derpd_mesh_peer_connects_total", "counter", "handshakes completed with the mesh peer",
       &MeshLinkStats::connects},
      {"derpd_mesh_peer_keys", "gauge", "client keys the mesh peer reports present",
       &MeshLinkStats::keys},
      {"derpd_mesh_forwarded_out_packets_total", "counter",
       "packets forwarded to the mesh peer (ForwardPacket)", &MeshLinkStats::forwardedPackets},
      {"derpd_mesh_forwarded_out_bytes_total", "counter",
       "payload bytes forwarded to the mesh peer", &MeshLinkStats::forwardedBytes},
  };
  std::lock_guard lock(mu_);
  for (const Family& f : kFamilies) {
    absl::StrAppend(&out, "# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name, " ", f.type, "\n");
    for (const MeshLinkStats& s : links_) {
      if (!s.live.load(std::memory_order_relaxed)) continue;
      absl::StrAppend(&out, f.name, "{peer=\"", labelValue(s.label), "\"} ", (s.*f.counter).get(),
                      "\n");
    }
  }
  absl::StrAppend(&out,
                  "# HELP derpd_mesh_forward_drops_total packets for a mesh peer dropped, by "
                  "reason\n# TYPE derpd_mesh_forward_drops_total counter\n");
  for (const MeshLinkStats& s : links_) {
    if (!s.live.load(std::memory_order_relaxed)) continue;
    std::string peer = labelValue(s.label);
    absl::StrAppend(&out, "derpd_mesh_forward_drops_total{peer=\"", peer,
                    "\",reason=\"queue_head\"} ", s.dropsQueueHead.get(), "\n",
                    "derpd_mesh_forward_drops_total{peer=\"", peer, "\",reason=\"link_down\"} ",
                    s.dropsLinkDown.get(), "\n");
  }
}

std::string MeshStatsRegistry::debugText() const {
  std::string out = "peer\tup\tconnects\tkeys\tforwarded_packets\tforwarded_bytes\t"
                    "drops_queue_head\tdrops_link_down\n";
  std::lock_guard lock(mu_);
  for (const MeshLinkStats& s : links_) {
    if (!s.live.load(std::memory_order_relaxed)) continue;
    absl::StrAppend(&out, s.label, "\t", s.up.get(), "\t", s.connects.get(), "\t", s.keys.get(),
                    "\t", s.forwardedPackets.get(), "\t", s.forwardedBytes.get(), "\t",
                    s.dropsQueueHead.get(), "\t", s.dropsLinkDown.get(), "\n");
  }
  return out;
}

}  // namespace derpd::relay
