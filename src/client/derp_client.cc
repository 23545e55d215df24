#include "client/derp_client.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/client_tls.h"
#include "client/dial.h"
#include "client/fd_wait.h"
#include "derpd_config.h"

namespace derpd::client {
namespace {

constexpr size_t kMaxResponseHead = 16 * 1024;
constexpr size_t kReadChunk = 64 * 1024;
constexpr const char* kUserAgent = "derpd-client/" DERPD_VERSION;

Nanos now() { return monotonicNow(); }

std::string errnoText(int err) { return std::string(strerror(err)); }

// Over TLS the Host is the name the certificate is for, without the default
// port, as Go's client writes it for an https URL.
std::string hostHeader(const ClientOptions& opts) {
  const std::string& host = opts.tls && !opts.serverName.empty() ? opts.serverName : opts.host;
  const bool bracket = host.find(':') != std::string::npos;
  if (opts.tls && opts.port == 443) return bracket ? absl::StrCat("[", host, "]") : host;
  if (bracket) return absl::StrCat("[", host, "]:", opts.port);
  return absl::StrCat(host, ":", opts.port);
}

// The request head as Go's net/http writes it for derphttp: Host, User-Agent,
// then the remaining headers sorted by name.
std::string upgradeRequest(const ClientOptions& opts) {
  return absl::StrCat("GET /derp HTTP/1.1\r\nHost: ", hostHeader(opts),
                      "\r\nUser-Agent: ", kUserAgent, "\r\nConnection: Upgrade\r\n",
                      opts.fastStart ? "Derp-Fast-Start: 1\r\n" : "", "Upgrade: DERP\r\n",
                      opts.extraHeaders, "\r\n");
}

std::vector<uint8_t> clientInfoFrame(const ClientOptions& opts, const derp::NodeKey& ourKey,
                                     const derp::NodeKey& serverKey) {
  derp::ClientInfo info;
  info.version = static_cast<int>(derp::kProtocolVersion);
  info.meshKey = opts.meshKey;
  info.canAckPings = opts.canAckPings;
  info.isProber = opts.isProber;
  std::string json = derp::clientInfoJson(info);
  std::vector<uint8_t> sealed = derp::sealBox(
      opts.key, serverKey,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(json.data()), json.size()));
  std::vector<uint8_t> frame(derp::kFrameHeaderLen + derp::kKeyLen + sealed.size());
  derp::writeFrameHeader(frame.data(), derp::FrameType::kClientInfo,
                         static_cast<uint32_t>(derp::kKeyLen + sealed.size()));
  std::copy(ourKey.bytes.begin(), ourKey.bytes.end(), frame.begin() + derp::kFrameHeaderLen);
  std::copy(sealed.begin(), sealed.end(), frame.begin() + derp::kFrameHeaderLen + derp::kKeyLen);
  return frame;
}

std::span<const uint8_t> asBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

absl::Status annotate(const absl::Status& st, std::string_view step) {
  return absl::Status(st.code(), absl::StrCat(std::string(step), ": ", st.message()));
}

}  // namespace

absl::StatusOr<derp::Frame> OwnedFrame::parse() const { return derp::parseFrameBody(type, body); }

absl::StatusOr<std::unique_ptr<DerpClient>> DerpClient::connect(const ClientOptions& opts) {
  Nanos deadline = now() + opts.timeout;
  absl::StatusOr<int> fd = dialTcp(opts.host, opts.port, deadline, opts.receiveBufferBytes);
  if (!fd.ok()) return fd.status();
  std::unique_ptr<DerpClient> c(new DerpClient());
  c->fd_ = *fd;
  c->writeTimeout_ = opts.timeout;
  c->key_ = opts.key;
  c->publicKey_ = opts.key.publicKey();
  c->rbuf_.resize(2 * kReadChunk);
  if (!opts.tls) {
    if (absl::Status st = c->handshake(opts, deadline); !st.ok()) return st;
    return c;
  }

  absl::StatusOr<std::unique_ptr<ClientTls>> tls = ClientTls::handshake(c->fd_, opts, deadline);
  if (!tls.ok()) {
    return annotate(tls.status(), absl::StrCat("TLS with ", opts.host, ":", opts.port));
  }
  c->tls_ = *std::move(tls);
  c->tlsVersion_ = c->tls_->version();
  c->peerCertChainDer_ = c->tls_->peerChainDer();
  ClientOptions effective = opts;
  if (const std::optional<MetaCert>& meta = c->tls_->metaCert(); meta.has_value()) {
    c->metaCertKey_ = meta->serverKey;
    if (opts.serverKey.has_value() && *opts.serverKey != meta->serverKey) {
      return absl::DataLossError(absl::StrCat("TLS meta-cert names server key ",
                                              meta->serverKey.toString(), ", expected ",
                                              opts.serverKey->toString()));
    }
    if (opts.fastStartFromMetaCert) {
      effective.fastStart = true;
      effective.serverKey = meta->serverKey;
    }
  }
  if (absl::Status st = c->handshake(effective, deadline); !st.ok()) return st;
  return c;
}

DerpClient::DerpClient() = default;

DerpClient::~DerpClient() { close(); }

absl::Status DerpClient::handshake(const ClientOptions& opts, Nanos deadline) {
  usedFastStart_ = opts.fastStart;
  std::string request = upgradeRequest(opts);
  bool clientInfoSent = false;
  if (opts.fastStart && opts.serverKey.has_value()) {
    std::vector<uint8_t> bytes(request.begin(), request.end());
    std::vector<uint8_t> info = clientInfoFrame(opts, publicKey_, *opts.serverKey);
    bytes.insert(bytes.end(), info.begin(), info.end());
    if (absl::Status st = writeAll(bytes, deadline); !st.ok()) {
      return annotate(st, "writing upgrade request and ClientInfo");
    }
    clientInfoSent = true;
  } else if (absl::Status st = writeAll(asBytes(request), deadline); !st.ok()) {
    return annotate(st, "writing upgrade request");
  }
  if (!opts.fastStart) {
    if (absl::Status st = readResponseHead(deadline); !st.ok()) return st;
  }

  absl::StatusOr<OwnedFrame> first = readFrame(deadline);
  if (!first.ok()) return annotate(first.status(), "reading ServerKey");
  if (first->frameType() != derp::FrameType::kServerKey) {
    return absl::DataLossError(
        absl::StrCat("expected ServerKey frame, got type ", static_cast<int>(first->type)));
  }
  const std::vector<uint8_t>& body = first->body;
  if (body.size() < derp::kMagic.size() + derp::kKeyLen ||
      !std::equal(derp::kMagic.begin(), derp::kMagic.end(), body.begin())) {
    return absl::DataLossError("ServerKey frame: bad magic or too short");
  }
  serverKey_ = derp::NodeKey::fromSpan(
      std::span<const uint8_t>(body).subspan(derp::kMagic.size(), derp::kKeyLen));
  if (opts.serverKey.has_value() && *opts.serverKey != serverKey_) {
    return absl::DataLossError(absl::StrCat("ServerKey ", serverKey_.toString(),
                                            " differs from the expected ",
                                            opts.serverKey->toString()));
  }

  if (!clientInfoSent) {
    std::vector<uint8_t> info = clientInfoFrame(opts, publicKey_, serverKey_);
    if (absl::Status st = writeAll(info, deadline); !st.ok()) {
      return annotate(st, "writing ClientInfo");
    }
  }

  for (;;) {
    absl::StatusOr<OwnedFrame> f = readFrame(deadline);
    if (!f.ok()) return annotate(f.status(), "reading ServerInfo");
    if (f->frameType() != derp::FrameType::kServerInfo) {
      pending_.push_back(*std::move(f));
      continue;
    }
    absl::StatusOr<std::vector<uint8_t>> plain = derp::openBox(key_, serverKey_, f->body);
    if (!plain.ok()) return annotate(plain.status(), "opening ServerInfo");
    absl::StatusOr<derp::ServerInfo> info = derp::parseServerInfoJson(
        std::string_view(reinterpret_cast<const char*>(plain->data()), plain->size()));
    if (!info.ok()) return annotate(info.status(), "parsing ServerInfo");
    serverInfo_ = *info;
    return absl::OkStatus();
  }
}

absl::Status DerpClient::readResponseHead(Nanos deadline) {
  constexpr std::string_view kEnd = "\r\n\r\n";
  for (;;) {
    std::string_view buffered(reinterpret_cast<const char*>(rbuf_.data()) + rpos_, rend_ - rpos_);
    size_t end = buffered.find(kEnd);
    if (end != std::string_view::npos) {
      std::string_view statusLine = buffered.substr(0, buffered.find("\r\n"));
      if (!statusLine.starts_with("HTTP/1.1 101") && !statusLine.starts_with("HTTP/1.0 101")) {
        return absl::FailedPreconditionError(
            absl::StrCat("upgrade refused: ", std::string(statusLine)));
      }
      rpos_ += end + kEnd.size();
      return absl::OkStatus();
    }
    if (buffered.size() > kMaxResponseHead) {
      return absl::DataLossError("HTTP response head over 16 KiB");
    }
    if (absl::Status st = fill(deadline); !st.ok()) {
      return annotate(st, "reading HTTP response");
    }
  }
}

absl::Status DerpClient::fill(Nanos deadline) {
  if (fd_ < 0) return absl::FailedPreconditionError("client is closed");
  if (rpos_ == rend_) rpos_ = rend_ = 0;
  if (rbuf_.size() - rend_ < kReadChunk / 4) {
    if (rpos_ > 0) std::memmove(rbuf_.data(), rbuf_.data() + rpos_, rend_ - rpos_);
    rend_ -= rpos_;
    rpos_ = 0;
    if (rbuf_.size() - rend_ < kReadChunk) rbuf_.resize(rend_ + kReadChunk);
  }
  absl::StatusOr<size_t> n =
      readSome(std::span<uint8_t>(rbuf_.data() + rend_, rbuf_.size() - rend_), deadline);
  if (!n.ok()) return n.status();
  rend_ += *n;
  return absl::OkStatus();
}

absl::StatusOr<size_t> DerpClient::readSome(std::span<uint8_t> buf, Nanos deadline) {
  if (tls_) return tls_->read(buf, deadline);
  for (;;) {
    ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) return absl::UnavailableError("connection closed by server");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return absl::UnavailableError(absl::StrCat("recv: ", errnoText(errno)));
    }
    if (absl::Status st = waitForFd(fd_, POLLIN, deadline, "waiting for data"); !st.ok()) {
      return st;
    }
  }
}

absl::StatusOr<OwnedFrame> DerpClient::readFrame(Nanos deadline) {
  for (;;) {
    size_t avail = rend_ - rpos_;
    if (avail >= derp::kFrameHeaderLen) {
      std::optional<derp::FrameHeader> h =
          derp::decodeFrameHeader(std::span<const uint8_t>(rbuf_.data() + rpos_, avail));
      if (h->length > derp::kMaxFrameLen) {
        return absl::DataLossError(absl::StrCat("frame of type ", static_cast<int>(h->type),
                                                " too long: ", h->length, " bytes"));
      }
      size_t total = derp::kFrameHeaderLen + h->length;
      if (avail >= total) {
        OwnedFrame f;
        f.type = h->type;
        const uint8_t* b = rbuf_.data() + rpos_ + derp::kFrameHeaderLen;
        f.body.assign(b, b + h->length);
        rpos_ += total;
        return f;
      }
    }
    if (absl::Status st = fill(deadline); !st.ok()) return st;
  }
}

absl::Status DerpClient::writeAll(std::span<const uint8_t> bytes, Nanos deadline) {
  if (fd_ < 0) return absl::FailedPreconditionError("client is closed");
  if (tls_) return tls_->write(bytes, deadline);
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes = bytes.subspan(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      return absl::UnavailableError(absl::StrCat("send: ", errnoText(errno)));
    }
    if (absl::Status st = waitForFd(fd_, POLLOUT, deadline, "writing"); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status DerpClient::writeFrame(derp::FrameType type, std::span<const uint8_t> prefix,
                                    std::span<const uint8_t> body) {
  size_t len = prefix.size() + body.size();
  wbuf_.resize(derp::kFrameHeaderLen + len);
  derp::writeFrameHeader(wbuf_.data(), type, static_cast<uint32_t>(len));
  std::copy(prefix.begin(), prefix.end(), wbuf_.begin() + derp::kFrameHeaderLen);
  std::copy(body.begin(), body.end(), wbuf_.begin() + derp::kFrameHeaderLen + prefix.size());
  return writeAll(wbuf_, now() + writeTimeout_);
}

absl::Status DerpClient::sendPacket(const derp::NodeKey& dst, std::span<const uint8_t> payload) {
  if (payload.size() > derp::kMaxPacketSize) {
    return absl::InvalidArgumentError("packet over 64 KiB");
  }
  return writeFrame(derp::FrameType::kSendPacket, dst.bytes, payload);
}

absl::Status DerpClient::sendPing(const derp::PingData& data) {
  return writeFrame(derp::FrameType::kPing, {}, data);
}

absl::Status DerpClient::notePreferred(bool preferred) {
  const uint8_t b = preferred ? 1 : 0;
  return writeFrame(derp::FrameType::kNotePreferred, {}, std::span<const uint8_t>(&b, 1));
}

absl::Status DerpClient::sendRaw(std::span<const uint8_t> bytes) {
  return writeAll(bytes, now() + writeTimeout_);
}

absl::StatusOr<size_t> DerpClient::recvRaw(std::span<uint8_t> buf, Nanos timeout) {
  if (buf.empty()) return 0;
  if (rpos_ < rend_) {
    const size_t n = std::min(buf.size(), rend_ - rpos_);
    std::memcpy(buf.data(), rbuf_.data() + rpos_, n);
    rpos_ += n;
    return n;
  }
  if (fd_ < 0) return absl::FailedPreconditionError("client is closed");
  return readSome(buf, now() + timeout);
}

void DerpClient::releaseBuffers() {
  std::vector<uint8_t> kept(rbuf_.begin() + static_cast<ptrdiff_t>(rpos_),
                            rbuf_.begin() + static_cast<ptrdiff_t>(rend_));
  rbuf_.swap(kept);
  rpos_ = 0;
  rend_ = rbuf_.size();
  std::vector<uint8_t>().swap(wbuf_);
}

absl::StatusOr<OwnedFrame> DerpClient::recv(Nanos timeout) {
  if (!pending_.empty()) {
    OwnedFrame f = std::move(pending_.front());
    pending_.pop_front();
    return f;
  }
  return readFrame(now() + timeout);
}

absl::StatusOr<DerpClient::Packet> DerpClient::recvPacket(Nanos timeout) {
  Nanos deadline = now() + timeout;
  for (;;) {
    absl::StatusOr<OwnedFrame> f = recv(std::max<Nanos>(deadline - now(), 0));
    if (!f.ok()) return f.status();
    if (f->frameType() != derp::FrameType::kRecvPacket) {
      // A stream of other frames must not keep us past the deadline.
      if (now() >= deadline) return absl::DeadlineExceededError("timed out waiting for a packet");
      continue;
    }
    if (f->body.size() < derp::kKeyLen) {
      return absl::DataLossError("RecvPacket shorter than a key");
    }
    Packet p;
    p.src = derp::NodeKey::fromSpan(std::span<const uint8_t>(f->body).first(derp::kKeyLen));
    p.payload.assign(f->body.begin() + derp::kKeyLen, f->body.end());
    return p;
  }
}

absl::StatusOr<Nanos> DerpClient::ping(Nanos timeout) {
  Nanos start = now();
  Nanos deadline = start + timeout;
  derp::PingData data;
  randombytes_buf(data.data(), data.size());
  if (absl::Status st = sendPing(data); !st.ok()) return st;
  for (;;) {
    absl::StatusOr<OwnedFrame> f = recv(std::max<Nanos>(deadline - now(), 0));
    if (!f.ok()) return annotate(f.status(), "waiting for Pong");
    if (f->frameType() == derp::FrameType::kPong && f->body.size() >= data.size() &&
        std::equal(data.begin(), data.end(), f->body.begin())) {
      return now() - start;
    }
    if (now() >= deadline) return absl::DeadlineExceededError("timed out waiting for Pong");
  }
}

void DerpClient::close() {
  if (tls_) {
    tls_->shutdown();
    tls_.reset();
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace derpd::client
