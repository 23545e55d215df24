#include "relay/stun_server.h"

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace derpd::relay {
namespace {

// 512 buffers of 1 KiB: a STUN request is tens of bytes; bigger datagrams are
// truncated (and then fail to parse), which is what they deserve.
constexpr uint16_t kBuffers = 512;
constexpr uint32_t kBufferSize = 1024;

}  // namespace

StunServer::StunServer(UniqueFd socket, ShardCounters& counters)
    : socket_(std::move(socket)), counters_(counters) {}

absl::Status StunServer::init(IoRing& ring, uint16_t bufferGroup) {
  ring_ = &ring;
  auto b = BufferRing::create(ring.raw(), bufferGroup, kBuffers, kBufferSize);
  if (!b.ok()) return b.status();
  buffers_ = std::move(*b);
  recvTemplate_.msg_namelen = sizeof(sockaddr_storage);
  recvTemplate_.msg_controllen = 0;
  return absl::OkStatus();
}

void StunServer::start() { arm(); }

void StunServer::stop() { stopping_ = true; }

void StunServer::arm() {
  if (stopping_) return;
  io_uring_sqe* s = ring_->sqe();
  io_uring_prep_recvmsg_multishot(s, socket_.get(), &recvTemplate_, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = buffers_->groupId();
  IoRing::setCompletion(s, this);
  armed_ = true;
}

void StunServer::complete(int res, uint32_t flags) {
  if (!(flags & IORING_CQE_F_MORE)) armed_ = false;
  if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
    uint16_t bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    uint8_t* buf = buffers_->buffer(bid);
    auto* out = io_uring_recvmsg_validate(buf, res, &recvTemplate_);
    if (out != nullptr && !(out->flags & MSG_TRUNC)) {
      const uint8_t* payload =
          static_cast<const uint8_t*>(io_uring_recvmsg_payload(out, &recvTemplate_));
      size_t len = io_uring_recvmsg_payload_length(out, res, &recvTemplate_);
      answer(payload, len, static_cast<const sockaddr*>(io_uring_recvmsg_name(out)),
             out->namelen);
    } else {
      counters_.stunDrop(stun::DropReason::kBadLength);
    }
    buffers_->recycle(bid);
  }
  // Out of buffers or ended by the kernel: ask again (the buffers come back at
  // the end of this turn).
  if (!armed_) arm();
}

void StunServer::answer(const uint8_t* data, size_t len, const sockaddr* from,
                        socklen_t fromLen) {
  counters_.stunRequests.add();
  auto parsed = stun::parseBindingRequest({data, len});
  if (auto* reason = std::get_if<stun::DropReason>(&parsed)) {
    counters_.stunDrop(*reason);
    return;
  }
  if (pending_ == kBatch) flush();
  size_t i = pending_;
  size_t n = stun::buildBindingResponse(std::get<stun::BindingRequest>(parsed), from, out_[i]);
  if (n == 0) {
    counters_.stunDrop(stun::DropReason::kBadLength);
    return;
  }
  std::memcpy(&peers_[i], from, std::min<size_t>(fromLen, sizeof(sockaddr_storage)));
  iov_[i] = iovec{out_[i].data(), n};
  msgs_[i] = mmsghdr{};
  msgs_[i].msg_hdr.msg_name = &peers_[i];
  msgs_[i].msg_hdr.msg_namelen = fromLen;
  msgs_[i].msg_hdr.msg_iov = &iov_[i];
  msgs_[i].msg_hdr.msg_iovlen = 1;
  pending_++;
}

void StunServer::flush() {
  buffers_->commit();
  size_t sent = 0;
  while (sent < pending_) {
    int n = ::sendmmsg(socket_.get(), msgs_.data() + sent, static_cast<unsigned>(pending_ - sent),
                       MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      // A full socket buffer or an unreachable peer: UDP answers are best effort.
      counters_.stunSendErrors.add(pending_ - sent);
      break;
    }
    counters_.stunResponses.add(static_cast<uint64_t>(n));
    sent += static_cast<size_t>(n);
  }
  pending_ = 0;
}

}  // namespace derpd::relay
