#include "runtime/io_uring_probe.h"

#include <liburing.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/unique_fd.h"
#include "runtime/buffer_ring.h"

namespace derpd {
namespace {

constexpr const char* kSeccompFix =
    "run derpd under a seccomp profile that allows io_uring_setup, io_uring_enter and "
    "io_uring_register: k8s/seccomp/derpd.json (Kubernetes: securityContext.seccompProfile "
    "type Localhost; podman/docker: --security-opt seccomp=k8s/seccomp/derpd.json), or "
    "Unconfined";

std::string kernelRelease() {
  utsname u{};
  return ::uname(&u) == 0 ? std::string(u.release) : std::string("unknown");
}

std::optional<int> readDisabledSysctl() {
  std::ifstream in("/proc/sys/kernel/io_uring_disabled");
  int v = 0;
  if (in >> v) return v;
  return std::nullopt;
}

std::string oldKernel(absl::string_view release, absl::string_view lacks) {
  return absl::StrCat("this kernel (", release, ") lacks ", lacks, ": derpd needs Linux ",
                      kMinimumKernel, " or later");
}

// Kind of the first io_uring feature derpd needs that this ring refuses, or
// empty. A socket pair stands in for a client: a multishot receive must
// deliver a byte into a provided buffer and stay armed (IORING_CQE_F_MORE).
std::string missingFeature(io_uring& ring) {
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
    struct Need {
      int op;
      const char* name;
    };
    const Need needs[] = {{IORING_OP_ACCEPT, "IORING_OP_ACCEPT"},
                          {IORING_OP_RECV, "IORING_OP_RECV"},
                          {IORING_OP_RECVMSG, "IORING_OP_RECVMSG"},
                          {IORING_OP_SENDMSG, "IORING_OP_SENDMSG"},
                          {IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL"}};
    for (const Need& n : needs) {
      if (!io_uring_opcode_supported(probe, n.op)) {
        io_uring_free_probe(probe);
        return n.name;
      }
    }
    io_uring_free_probe(probe);
  } else {
    return "IORING_REGISTER_PROBE (Linux 5.6)";
  }
  auto buffers = BufferRing::create(&ring, 7, 8, 4096);
  if (!buffers.ok()) return "provided buffer rings (IORING_REGISTER_PBUF_RING, Linux 5.19)";
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return "";  // not io_uring's
  UniqueFd a(sv[0]), b(sv[1]);
  io_uring_sqe* s = io_uring_get_sqe(&ring);
  io_uring_prep_recv_multishot(s, a.get(), nullptr, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = (*buffers)->groupId();
  io_uring_sqe_set_data64(s, 1);
  if (::write(b.get(), "x", 1) != 1) return "";
  io_uring_submit(&ring);
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts{1, 0};
  if (io_uring_wait_cqe_timeout(&ring, &cqe, &ts) != 0 || cqe == nullptr) {
    return "multishot receive (no completion within a second)";
  }
  const int res = cqe->res;
  const bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  io_uring_cqe_seen(&ring, cqe);
  if (res != 1 || !more) return "multishot receive (IORING_RECV_MULTISHOT, Linux 6.0)";
  // Ends the receive before the buffers go away.
  s = io_uring_get_sqe(&ring);
  io_uring_prep_cancel64(s, 1, 0);
  io_uring_submit_and_wait(&ring, 1);
  return "";
}

}  // namespace

std::string ioUringSetupAdvice(int err, absl::string_view release,
                               std::optional<int> disabledSysctl) {
  const std::string call = absl::StrCat("io_uring_setup failed (", strerror(err), ")");
  if (disabledSysctl && *disabledSysctl == 2) {
    return absl::StrCat(call, ": io_uring is disabled on this host (kernel.io_uring_disabled=2); ",
                        "set it to 0 (sysctl -w kernel.io_uring_disabled=0, and in ",
                        "/etc/sysctl.d/ to keep it), or run derpd on a node that allows it");
  }
  if (err == EPERM && disabledSysctl && *disabledSysctl == 1) {
    return absl::StrCat(call, ": kernel.io_uring_disabled=1 allows io_uring only to root and to ",
                        "the group in kernel.io_uring_group; add derpd's user to that group ",
                        "or set kernel.io_uring_disabled=0. If neither applies, a seccomp ",
                        "filter refuses it: ", kSeccompFix);
  }
  if (err == EPERM || err == EACCES) {
    return absl::StrCat(call, ": a seccomp filter refuses it (the default profiles of Docker, ",
                        "containerd and CRI-O do); ", kSeccompFix);
  }
  if (err == ENOSYS) {
    return absl::StrCat(call, ": either a seccomp filter hides io_uring (", kSeccompFix,
                        "), or this kernel (", release,
                        ") was built without it (CONFIG_IO_URING); ", "derpd needs Linux ",
                        kMinimumKernel, " or later with io_uring");
  }
  if (err == ENOMEM) {
    return absl::StrCat(call, ": the locked-memory limit is too small for the rings (kernels ",
                        "before 5.12 charge them to RLIMIT_MEMLOCK); raise it (systemd: ",
                        "LimitMEMLOCK=infinity; ulimit -l unlimited)");
  }
  if (err == EINVAL) {
    return absl::StrCat(call, ": ", oldKernel(release, "the io_uring setup flags derpd uses"));
  }
  return absl::StrCat(call, "; derpd needs io_uring on Linux ", kMinimumKernel, " or later");
}

absl::Status probeIoUring() {
  io_uring ring{};
  const int err = io_uring_queue_init(8, &ring, 0);
  if (err != 0) {
    return absl::FailedPreconditionError(
        ioUringSetupAdvice(-err, kernelRelease(), readDisabledSysctl()));
  }
  const std::string missing = missingFeature(ring);
  io_uring_queue_exit(&ring);
  if (!missing.empty()) {
    return absl::FailedPreconditionError(oldKernel(kernelRelease(), missing));
  }
  return absl::OkStatus();
}

}  // namespace derpd
