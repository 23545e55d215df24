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
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "derp/frame.h"
#include "derp/handshake.h"
#include "derp/key.h"

namespace {

using derpd::derp::NodeKey;

constexpr size_t kBufSize = 160 << 10;  // a frame (at most 64 KiB + 37) always fits after a tail
constexpr size_t kMaxIov = 64;
constexpr unsigned kRingEntries = 1024;

struct Buf {
  uint8_t* data;
  int refs = 0;
};

struct Segment {
  Buf* buf;
  const uint8_t* p;
  size_t len;
};

enum class State { kHttp, kClientInfo, kDerp };

struct Conn {
  int fd = -1;
  State state = State::kHttp;
  NodeKey key{};
  std::vector<uint8_t> pending;  // handshake bytes, or the tail of a cut frame
  Buf* rbuf = nullptr;           // the buffer a recv is filling
  size_t rstart = 0;             // where the recv writes in rbuf (after the tail)
  std::deque<Segment> outq;
  bool sending = false;
  iovec iov[kMaxIov];
  msghdr msg{};
  int inflight = 0;  // ops in the ring that name this Conn
  bool closed = false;
};

enum Kind : uintptr_t { kAccept = 0, kRecv = 1, kSend = 2 };

class Floor {
 public:
  explicit Floor(int listenFd) : listenFd_(listenFd) {
    if (int rc = io_uring_queue_init(kRingEntries, &ring_, 0); rc < 0) {
      std::fprintf(stderr, "derp-floor: io_uring_queue_init: %s\n", std::strerror(-rc));
      std::exit(1);
    }
    serverKey_ = derpd::derp::PrivateKey::generate();
  }

  void run(const volatile sig_atomic_t& stop) {
    submitAccept();
    while (!stop) {
      io_uring_submit_and_wait(&ring_, 1);
      io_uring_cqe* cqe;
      unsigned head;
      unsigned seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        handle(cqe->user_data, cqe->res);
        seen++;
      }
      io_uring_cq_advance(&ring_, seen);
    }
  }

 private:
  io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    if (s == nullptr) {
      io_uring_submit(&ring_);
      s = io_uring_get_sqe(&ring_);
    }
    return s;
  }

  void submitAccept() {
    io_uring_sqe* s = sqe();
    io_uring_prep_accept(s, listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, kAccept);
  }

  Buf* takeBuf() {
    if (free_.empty()) {
      bufs_.push_back(Buf{new uint8_t[kBufSize], 0});
      free_.push_back(&bufs_.back());
    }
    Buf* b = free_.back();
    free_.pop_back();
    b->refs = 1;
    return b;
  }

  void release(Buf* b) {
    if (--b->refs == 0) free_.push_back(b);
  }

  void submitRecv(Conn* c) {
    c->rbuf = takeBuf();
    c->rstart = 0;
    if (c->state == State::kDerp && !c->pending.empty()) {
      std::memcpy(c->rbuf->data, c->pending.data(), c->pending.size());
      c->rstart = c->pending.size();
      c->pending.clear();
    }
    io_uring_sqe* s = sqe();
    io_uring_prep_recv(s, c->fd, c->rbuf->data + c->rstart, kBufSize - c->rstart, 0);
    io_uring_sqe_set_data64(s, reinterpret_cast<uintptr_t>(c) | kRecv);
    c->inflight++;
  }

  void handle(uint64_t data, int res) {
    if (data == kAccept) {
      if (res >= 0) {
        int one = 1;
        ::setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        Conn* c = new Conn();
        c->fd = res;
        submitRecv(c);
      }
      submitAccept();
      return;
    }
    Conn* c = reinterpret_cast<Conn*>(data & ~uintptr_t{3});
    c->inflight--;
    if ((data & 3) == kRecv) {
      onRecv(c, res);
    } else {
      onSent(c, res);
    }
    if (c->closed && c->inflight == 0) delete c;
  }

  void close(Conn* c) {
    if (c->closed) return;
    c->closed = true;
    lastDst_ = nullptr;
    if (c->state == State::kDerp) {
      auto it = byKey_.find(c->key);
      if (it != byKey_.end() && it->second == c) byKey_.erase(it);
    }
    for (Segment& s : c->outq) release(s.buf);
    c->outq.clear();
    ::close(c->fd);
  }

  void onRecv(Conn* c, int res) {
    Buf* b = c->rbuf;
    c->rbuf = nullptr;
    if (res <= 0 || c->closed) {
      release(b);
      close(c);
      return;
    }
    const size_t n = c->rstart + static_cast<size_t>(res);
    if (c->state != State::kDerp) {
      c->pending.insert(c->pending.end(), b->data + c->rstart, b->data + n);
      release(b);
      if (!handshake(c)) {
        close(c);
        return;
      }
    } else {
      forward(c, b, n);
      release(b);
    }
    if (!c->closed) submitRecv(c);
  }

  // Moves the handshake along with the bytes in c->pending; false: hopeless.
  bool handshake(Conn* c) {
    if (c->state == State::kHttp) {
      std::string_view text(reinterpret_cast<const char*>(c->pending.data()), c->pending.size());
      const size_t end = text.find("\r\n\r\n");
      if (end == std::string_view::npos) return c->pending.size() < 16384;
      c->pending.erase(c->pending.begin(), c->pending.begin() + static_cast<long>(end + 4));
      std::string out =
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n"
          "Derp-Version: 2\r\nDerp-Public-Key: " +
          serverKey_.publicKey().hex() + "\r\n\r\n";
      std::vector<uint8_t> frame =
          derpd::derp::encodeFrame(derpd::derp::ServerKeyFrame{serverKey_.publicKey()});
      out.append(reinterpret_cast<const char*>(frame.data()), frame.size());
      if (!sendSmall(c, out)) return false;
      c->state = State::kClientInfo;
    }
    if (c->pending.size() < derpd::derp::kFrameHeaderLen) return true;
    std::optional<derpd::derp::FrameHeader> h = derpd::derp::decodeFrameHeader(c->pending);
    if (!h || h->type != static_cast<uint8_t>(derpd::derp::FrameType::kClientInfo) ||
        h->length < derpd::derp::kKeyLen) {
      return false;
    }
    const size_t total = derpd::derp::kFrameHeaderLen + h->length;
    if (c->pending.size() < total) return true;
    c->key = NodeKey::fromSpan(
        std::span<const uint8_t>(c->pending).subspan(derpd::derp::kFrameHeaderLen, 32));
    c->pending.erase(c->pending.begin(), c->pending.begin() + static_cast<long>(total));
    const std::string json = derpd::derp::serverInfoJson({});
    std::vector<uint8_t> sealed = derpd::derp::sealBox(
        serverKey_, c->key,
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(json.data()), json.size()));
    std::vector<uint8_t> frame = derpd::derp::encodeFrame(derpd::derp::ServerInfoFrame{sealed});
    if (!sendSmall(c, std::string(frame.begin(), frame.end()))) return false;
    c->state = State::kDerp;
    byKey_[c->key] = c;
    lastDst_ = nullptr;
    return true;
  }

  // The handshake's few hundred bytes, written at once (the socket's buffer
  // is empty then).
  static bool sendSmall(Conn* c, const std::string& bytes) {
    return ::send(c->fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }

  // The whole frames in b[0, n): SendPackets rewritten in place into
  // RecvPackets and queued on their receivers in runs; a cut frame's tail
  // kept for the next recv.
  void forward(Conn* c, Buf* b, size_t n) {
    uint8_t* p = b->data;
    size_t at = 0;
    Conn* runDst = nullptr;
    size_t runStart = 0;
    auto flush = [&](size_t end) {
      if (runDst != nullptr && end > runStart) queue(runDst, b, p + runStart, end - runStart);
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
          std::memcpy(key, c->key.bytes.data(), 32);
        }
      }
      if (dst != runDst) {
        flush(at);
        runDst = dst;
        runStart = at;
      }
      at += total;
    }
    flush(at);
    if (at < n) c->pending.assign(p + at, p + n);
  }

  void queue(Conn* dst, Buf* b, const uint8_t* p, size_t len) {
    b->refs++;
    dst->outq.push_back({b, p, len});
    if (!dst->sending) submitSend(dst);
  }

  void submitSend(Conn* c) {
    size_t k = 0;
    for (const Segment& s : c->outq) {
      if (k == kMaxIov) break;
      c->iov[k++] = {const_cast<uint8_t*>(s.p), s.len};
    }
    c->msg = {};
    c->msg.msg_iov = c->iov;
    c->msg.msg_iovlen = k;
    io_uring_sqe* s = sqe();
    io_uring_prep_sendmsg(s, c->fd, &c->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, reinterpret_cast<uintptr_t>(c) | kSend);
    c->sending = true;
    c->inflight++;
  }

  void onSent(Conn* c, int res) {
    c->sending = false;
    if (c->closed) return;
    if (res < 0) {
      close(c);
      return;
    }
    size_t done = static_cast<size_t>(res);
    while (done > 0 && !c->outq.empty()) {
      Segment& s = c->outq.front();
      if (done < s.len) {
        s.p += done;
        s.len -= done;
        break;
      }
      done -= s.len;
      release(s.buf);
      c->outq.pop_front();
    }
    if (!c->outq.empty()) submitSend(c);
  }

  int listenFd_;
  io_uring ring_{};
  derpd::derp::PrivateKey serverKey_;
  std::deque<Buf> bufs_;  // stable addresses
  std::vector<Buf*> free_;
  absl::flat_hash_map<NodeKey, Conn*> byKey_;
  // The last SendPacket's destination: the same one for a whole burst.
  NodeKey lastKey_{};
  Conn* lastDst_ = nullptr;
};

volatile sig_atomic_t gStop = 0;

}  // namespace

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:0";
  for (int i = 1; i < argc; i++) {
    std::string_view a = argv[i];
    if (a == "--addr" && i + 1 < argc) {
      addr = argv[++i];
    } else {
      std::fprintf(stderr, "usage: derp-floor [--addr 127.0.0.1:PORT]\n");
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
  Floor floor(fd);
  floor.run(gStop);
  return 0;
}
