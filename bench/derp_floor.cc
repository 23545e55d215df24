// derp-floor: the least work a relay must do for derp-bench's oneway traffic,
// to measure derpd against in the same run (issue 20, bench/README.md "The
// floor"). One thread, one io_uring ring, plain TCP only:
//
// - the DERP handshake, just enough for a real client: the 101, ServerKey,
//   ClientInfo read (its key taken, its box not opened) and a sealed
//   ServerInfo; no limits, no metrics, no timers;
// - then every byte a client sends is received into a buffer and forwarded
//   from that buffer: a SendPacket frame becomes a RecvPacket in place (same
//   length: type byte and key rewritten), runs of frames for one receiver go
//   out in one sendmsg straight from the receive buffers, other frames are
//   skipped. No copies except the tail of a frame cut by a buffer's end.
//
// What it leaves out is what a relay must add: frame checks, per-client
// queues and limits, keep-alives, TLS. Its CPU per packet is the kernel's
// floor (recv, send, wake-ups) plus a frame scan. The TLS floor is this plus
// AES-128-GCM open+seal of the same bytes, computed by bench/floor.sh from
// derp-bench's reference rate.
//
//   derp-floor [--addr 127.0.0.1:0]
// prints "derp-floor listening on http://127.0.0.1:PORT", serves until
// SIGINT or SIGTERM.
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "derp/frame.h"
#include "derp/handshake.h"
#include "derp/key.h"
#include "runtime/buffer_ring.h"
#include "runtime/io_ring.h"

namespace {

using derpd::Completion;
using derpd::derp::NodeKey;

constexpr size_t kMaxIov = 64;
constexpr size_t kCompletionsPerTurn = 32;  // as a derpd shard
constexpr uint16_t kBufferGroup = 1;
constexpr uint16_t kRecvBuffers = 512;  // 8 MiB of 16 KiB buffers, as a derpd shard
constexpr uint32_t kRecvBufferSize = 16 * 1024;

enum class State { kHttp, kClientInfo, kDerp };

class Floor;

struct Conn;

struct Op : Completion {
  Floor* floor = nullptr;
  Conn* conn = nullptr;
  bool isSend = false;
  void complete(int res, uint32_t flags) override;
};

struct Conn {
  int fd = -1;
  State state = State::kHttp;
  NodeKey key{};
  // Handshake bytes, or a frame cut by the end of a receive and what follows.
  std::vector<uint8_t> pending;
  // This turn's runs for this receiver, pointing into receive buffers.
  iovec iov[kMaxIov];
  size_t iovCount = 0;
  bool dirty = false;
  // Bytes the socket did not take at once, sent by the ring in order.
  std::vector<uint8_t> backlog;
  std::vector<uint8_t> sending;  // the backlog handed to the ring's sendmsg
  iovec sendIov{};
  msghdr msg{};
  Op recvOp;
  Op sendOp;
  bool recvArmed = false;
  bool closed = false;
  int inflight = 0;
};

class Floor {
 public:
  Floor(int listenFd, derpd::Nanos batchWait) : listenFd_(listenFd), batchWait_(batchWait) {
    auto ring = derpd::IoRing::create(4096);
    if (!ring.ok()) die("io_uring", std::string(ring.status().message()));
    ring_ = std::move(*ring);
    auto buffers =
        derpd::BufferRing::create(ring_->raw(), kBufferGroup, kRecvBuffers, kRecvBufferSize, true);
    if (!buffers.ok()) die("buffer ring", std::string(buffers.status().message()));
    buffers_ = std::move(*buffers);
    serverKey_ = derpd::derp::PrivateKey::generate();
    acceptOp_.floor = this;
  }

  void run(const volatile sig_atomic_t& stop) {
    armAccept();
    while (!stop) {
      ring_->runOnce(-1, kCompletionsPerTurn, batchWait_);
      flush();
      for (uint16_t bid : toRecycle_) buffers_->recycle(bid);
      toRecycle_.clear();
      buffers_->commit();
      for (Conn* c : dead_) delete c;
      dead_.clear();
    }
  }

  void onCompletion(Op& op, int res, uint32_t flags) {
    if (op.conn == nullptr) {
      onAccept(res);
    } else if (op.isSend) {
      onSent(*op.conn, res);
    } else {
      onRecv(*op.conn, res, flags);
    }
    if (op.conn != nullptr) {
      Conn* c = op.conn;
      if (op.isSend || !(flags & IORING_CQE_F_MORE)) c->inflight--;
      if (c->closed && c->inflight == 0) dead_.push_back(c);
    }
  }

 private:
  [[noreturn]] static void die(const char* what, const std::string& why) {
    std::fprintf(stderr, "derp-floor: %s: %s\n", what, why.c_str());
    std::exit(1);
  }

  void armAccept() {
    io_uring_sqe* s = ring_->sqe();
    io_uring_prep_multishot_accept(s, listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    derpd::IoRing::setCompletion(s, &acceptOp_);
  }

  void onAccept(int res) {
    if (res >= 0) {
      int one = 1;
      ::setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      Conn* c = new Conn();
      c->fd = res;
      c->recvOp = {};
      c->recvOp.floor = this;
      c->recvOp.conn = c;
      c->sendOp.floor = this;
      c->sendOp.conn = c;
      c->sendOp.isSend = true;
      armRecv(*c);
    }
    // The multishot accept ends on an error (or a full CQ): start another.
    if (res < 0) armAccept();
  }

  void armRecv(Conn& c) {
    io_uring_sqe* s = ring_->sqe();
    io_uring_prep_recv_multishot(s, c.fd, nullptr, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = kBufferGroup;
    derpd::IoRing::setCompletion(s, &c.recvOp);
    c.recvArmed = true;
    c.inflight++;
  }

  void close(Conn& c) {
    if (c.closed) return;
    c.closed = true;
    lastDst_ = nullptr;
    if (c.state == State::kDerp) {
      auto it = byKey_.find(c.key);
      if (it != byKey_.end() && it->second == &c) byKey_.erase(it);
    }
    c.iovCount = 0;
    ::shutdown(c.fd, SHUT_RDWR);
    ::close(c.fd);
    if (c.inflight == 0) dead_.push_back(&c);
  }

  void onRecv(Conn& c, int res, uint32_t flags) {
    if (!(flags & IORING_CQE_F_MORE)) c.recvArmed = false;
    if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
      const uint16_t bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
      bool done = false;
      uint8_t* data = buffers_->consume(bid, static_cast<size_t>(res), flags, done);
      if (!c.closed) received(c, data, static_cast<size_t>(res));
      if (done) toRecycle_.push_back(bid);
    } else if (res == 0 || (res < 0 && res != -ENOBUFS)) {
      close(c);
    }
    if (!c.recvArmed && !c.closed) armRecv(c);
  }

  void received(Conn& c, uint8_t* data, size_t n) {
    if (c.state != State::kDerp) {
      c.pending.insert(c.pending.end(), data, data + n);
      if (!handshake(c)) close(c);
      return;
    }
    if (c.pending.empty()) {
      // The common case: whole frames straight from the receive buffer.
      const size_t used = forward(c, data, n);
      if (used < n) c.pending.assign(data + used, data + n);
      return;
    }
    // A cut frame: complete it (and whatever follows) in pending, copied.
    c.pending.insert(c.pending.end(), data, data + n);
    const size_t used = forward(c, c.pending.data(), c.pending.size(), true);
    c.pending.erase(c.pending.begin(), c.pending.begin() + static_cast<long>(used));
  }

  // Moves the handshake along with the bytes in c.pending; false: hopeless.
  bool handshake(Conn& c) {
    if (c.state == State::kHttp) {
      std::string_view text(reinterpret_cast<const char*>(c.pending.data()), c.pending.size());
      const size_t end = text.find("\r\n\r\n");
      if (end == std::string_view::npos) return c.pending.size() < 16384;
      c.pending.erase(c.pending.begin(), c.pending.begin() + static_cast<long>(end + 4));
      std::string out =
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n"
          "Derp-Version: 2\r\nDerp-Public-Key: " +
          serverKey_.publicKey().hex() + "\r\n\r\n";
      std::vector<uint8_t> frame =
          derpd::derp::encodeFrame(derpd::derp::ServerKeyFrame{serverKey_.publicKey()});
      out.append(reinterpret_cast<const char*>(frame.data()), frame.size());
      if (!sendSmall(c, out)) return false;
      c.state = State::kClientInfo;
    }
    if (c.pending.size() < derpd::derp::kFrameHeaderLen) return true;
    std::optional<derpd::derp::FrameHeader> h = derpd::derp::decodeFrameHeader(c.pending);
    if (!h || h->type != static_cast<uint8_t>(derpd::derp::FrameType::kClientInfo) ||
        h->length < derpd::derp::kKeyLen) {
      return false;
    }
    const size_t total = derpd::derp::kFrameHeaderLen + h->length;
    if (c.pending.size() < total) return true;
    c.key = NodeKey::fromSpan(
        std::span<const uint8_t>(c.pending).subspan(derpd::derp::kFrameHeaderLen, 32));
    c.pending.erase(c.pending.begin(), c.pending.begin() + static_cast<long>(total));
    const std::string json = derpd::derp::serverInfoJson({});
    std::vector<uint8_t> sealed = derpd::derp::sealBox(
        serverKey_, c.key,
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(json.data()), json.size()));
    std::vector<uint8_t> frame = derpd::derp::encodeFrame(derpd::derp::ServerInfoFrame{sealed});
    if (!sendSmall(c, std::string(frame.begin(), frame.end()))) return false;
    c.state = State::kDerp;
    byKey_[c.key] = &c;
    lastDst_ = nullptr;
    // Bytes behind the ClientInfo are frames.
    if (!c.pending.empty()) {
      std::vector<uint8_t> rest = std::move(c.pending);
      c.pending.clear();
      const size_t used = forward(c, rest.data(), rest.size(), true);
      c.pending.assign(rest.begin() + static_cast<long>(used), rest.end());
    }
    return true;
  }

  // The handshake's few hundred bytes, written at once (the socket's buffer
  // is empty then).
  static bool sendSmall(Conn& c, const std::string& bytes) {
    return ::send(c.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }

  // The whole frames at the start of p[0, n): each SendPacket rewritten in
  // place into a RecvPacket and its receiver given the run it is part of
  // (copy: the bytes do not outlive this call, so runs are copied into the
  // receiver's backlog). Returns the bytes used (a cut frame's are not).
  size_t forward(Conn& c, uint8_t* p, size_t n, bool copy = false) {
    size_t at = 0;
    Conn* runDst = nullptr;
    size_t runStart = 0;
    auto endRun = [&](size_t end) {
      if (runDst != nullptr && end > runStart) give(*runDst, p + runStart, end - runStart, copy);
      runDst = nullptr;
    };
    while (n - at >= derpd::derp::kFrameHeaderLen) {
      const uint32_t len = (uint32_t{p[at + 1]} << 24) | (uint32_t{p[at + 2]} << 16) |
                           (uint32_t{p[at + 3]} << 8) | uint32_t{p[at + 4]};
      const size_t total = derpd::derp::kFrameHeaderLen + len;
      if (n - at < total) break;
      Conn* dst = nullptr;
      if (p[at] == static_cast<uint8_t>(derpd::derp::FrameType::kSendPacket) &&
          len >= derpd::derp::kKeyLen) {
        uint8_t* key = p + at + derpd::derp::kFrameHeaderLen;
        if (lastDst_ == nullptr || std::memcmp(lastKey_.bytes.data(), key, 32) != 0) {
          auto it = byKey_.find(NodeKey::fromSpan(std::span<const uint8_t>(key, 32)));
          lastDst_ = it == byKey_.end() ? nullptr : it->second;
          std::memcpy(lastKey_.bytes.data(), key, 32);
        }
        dst = lastDst_;
        if (dst != nullptr) {
          p[at] = static_cast<uint8_t>(derpd::derp::FrameType::kRecvPacket);
          std::memcpy(key, c.key.bytes.data(), 32);
        }
      }
      if (dst != runDst) {
        endRun(at);
        runDst = dst;
        runStart = at;
      }
      at += total;
    }
    endRun(at);
    return at;
  }

  // Bytes for dst: pointed to until the end of the turn, or copied behind
  // what it has not sent yet (order is kept).
  void give(Conn& dst, uint8_t* p, size_t len, bool copy) {
    if (copy || !dst.backlog.empty() || !dst.sending.empty() || dst.iovCount == kMaxIov) {
      flushOne(dst);  // what this turn gave it so far goes first
      dst.backlog.insert(dst.backlog.end(), p, p + len);
      if (dst.sending.empty()) sendBacklog(dst);
      return;
    }
    dst.iov[dst.iovCount++] = {p, len};
    if (!dst.dirty) {
      dst.dirty = true;
      dirty_.push_back(&dst);
    }
  }

  // End of turn: each receiver's runs in one sendmsg; what the socket does
  // not take is copied to its backlog and left to the ring.
  void flush() {
    for (Conn* c : dirty_) {
      c->dirty = false;
      flushOne(*c);
    }
    dirty_.clear();
  }

  void flushOne(Conn& c) {
    if (c.iovCount == 0 || c.closed) {
      c.iovCount = 0;
      return;
    }
    msghdr m{};
    m.msg_iov = c.iov;
    m.msg_iovlen = c.iovCount;
    ssize_t sent = ::sendmsg(c.fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0 && errno != EAGAIN && errno != EINTR) {
      c.iovCount = 0;
      close(c);
      return;
    }
    size_t skip = sent > 0 ? static_cast<size_t>(sent) : 0;
    for (size_t i = 0; i < c.iovCount; i++) {
      const iovec& v = c.iov[i];
      if (skip >= v.iov_len) {
        skip -= v.iov_len;
        continue;
      }
      const uint8_t* b = static_cast<const uint8_t*>(v.iov_base);
      c.backlog.insert(c.backlog.end(), b + skip, b + v.iov_len);
      skip = 0;
    }
    c.iovCount = 0;
    if (!c.backlog.empty() && c.sending.empty()) sendBacklog(c);
  }

  void sendBacklog(Conn& c) {
    c.sending.swap(c.backlog);
    c.sendIov = {c.sending.data(), c.sending.size()};
    c.msg = {};
    c.msg.msg_iov = &c.sendIov;
    c.msg.msg_iovlen = 1;
    io_uring_sqe* s = ring_->sqe();
    io_uring_prep_sendmsg(s, c.fd, &c.msg, MSG_NOSIGNAL | MSG_WAITALL);
    derpd::IoRing::setCompletion(s, &c.sendOp);
    c.inflight++;
  }

  void onSent(Conn& c, int res) {
    if (c.closed) return;
    if (res < 0) {
      close(c);
      return;
    }
    c.sending.erase(c.sending.begin(), c.sending.begin() + res);
    if (!c.sending.empty()) {
      // Short: the rest goes first.
      c.sending.insert(c.sending.end(), c.backlog.begin(), c.backlog.end());
      c.backlog.clear();
      c.backlog.swap(c.sending);
    }
    if (!c.backlog.empty()) sendBacklog(c);
  }

  int listenFd_;
  derpd::Nanos batchWait_;
  std::unique_ptr<derpd::IoRing> ring_;
  std::unique_ptr<derpd::BufferRing> buffers_;
  derpd::derp::PrivateKey serverKey_;
  Op acceptOp_;
  absl::flat_hash_map<NodeKey, Conn*> byKey_;
  std::vector<Conn*> dirty_;
  std::vector<uint16_t> toRecycle_;
  std::vector<Conn*> dead_;
  // The last SendPacket's destination: the same one for a whole burst.
  NodeKey lastKey_{};
  Conn* lastDst_ = nullptr;
};

void Op::complete(int res, uint32_t flags) { floor->onCompletion(*this, res, flags); }

volatile sig_atomic_t gStop = 0;

}  // namespace

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:0";
  derpd::Nanos batchWait = 0;
  for (int i = 1; i < argc; i++) {
    std::string_view a = argv[i];
    if (a == "--addr" && i + 1 < argc) {
      addr = argv[++i];
    } else if (a == "--batch-wait-us" && i + 1 < argc) {
      batchWait = std::atoi(argv[++i]) * derpd::kMicrosecond;
    } else {
      std::fprintf(stderr, "usage: derp-floor [--addr 127.0.0.1:PORT] [--batch-wait-us N]\n");
      return 2;
    }
  }
  const size_t colon = addr.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  if (colon == std::string::npos ||
      inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr) != 1) {
    std::fprintf(stderr, "derp-floor: --addr wants IPV4:PORT\n");
    return 2;
  }
  sa.sin_port = htons(static_cast<uint16_t>(std::atoi(addr.c_str() + colon + 1)));
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || ::listen(fd, 4096) != 0) {
    std::fprintf(stderr, "derp-floor: %s: %s\n", addr.c_str(), std::strerror(errno));
    return 1;
  }
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  struct sigaction act {};
  act.sa_handler = [](int) { gStop = 1; };
  ::sigaction(SIGINT, &act, nullptr);
  ::sigaction(SIGTERM, &act, nullptr);
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
  std::printf("derp-floor listening on http://%s:%u\n", ip, ntohs(sa.sin_port));
  std::fflush(stdout);
  Floor floor(fd, batchWait);
  floor.run(gStop);
  return 0;
}
