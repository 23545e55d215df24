// The TCP options derper's flags set (TCP_NODELAY, keep-alive after
// -tcp-keepalive-time, -tcp-user-timeout) are on every accepted connection.
// derpd sets them once on its listeners and the kernel copies them into each
// accepted socket; this test reads them back from derpd's own socket, which
// it borrows with pidfd_getfd (needs ptrace rights over derpd: root, or the
// same user with ptrace allowed).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "base/unique_fd.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/test_support.h"

namespace derpd::testing {
namespace {

int getIntOption(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof(v);
  if (::getsockopt(fd, level, name, &v, &len) != 0) return -1;
  return v;
}

bool sameAddress(const sockaddr_storage& a, socklen_t alen, const sockaddr_storage& b,
                 socklen_t blen) {
  return alen == blen && std::memcmp(&a, &b, alen) == 0;
}

// A copy of derpd's socket whose peer is `local` (our end), or an invalid fd.
UniqueFd borrowServerSocket(pid_t pid, const sockaddr_storage& local, socklen_t localLen) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) return UniqueFd();
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    std::error_code ec;
    std::string target = std::filesystem::read_symlink(entry.path(), ec).string();
    if (ec || !target.starts_with("socket:")) continue;
    int n = std::atoi(entry.path().filename().c_str());
    UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), n, 0)));
    if (!fd.valid()) continue;
    sockaddr_storage peer{};
    socklen_t peerLen = sizeof(peer);
    if (::getpeername(fd.get(), reinterpret_cast<sockaddr*>(&peer), &peerLen) == 0 &&
        sameAddress(peer, peerLen, local, localLen)) {
      return fd;
    }
  }
  return UniqueFd();
}

TEST(TcpOptionsTest, AcceptedConnectionsCarryDerpersTcpOptions) {
  DerpdOptions opts;
  opts.extraArgs = {"-tcp-keepalive-time", "7m", "-tcp-user-timeout", "9s"};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DerpdProcess> derpd, DerpdProcess::start(opts));
  ASSERT_OK_AND_ASSIGN(auto client, connectClient(derpd->port()));
  sockaddr_storage local{};
  socklen_t localLen = sizeof(local);
  ASSERT_EQ(::getsockname(client->fd(), reinterpret_cast<sockaddr*>(&local), &localLen), 0);
  UniqueFd server = borrowServerSocket(derpd->pid(), local, localLen);
  if (!server.valid()) {
    GTEST_SKIP() << "cannot borrow derpd's socket with pidfd_getfd (" << strerror(errno)
                 << "): needs a kernel >= 5.6 and ptrace rights over derpd";
  }
  EXPECT_EQ(getIntOption(server.get(), IPPROTO_TCP, TCP_NODELAY), 1);
  EXPECT_EQ(getIntOption(server.get(), SOL_SOCKET, SO_KEEPALIVE), 1);
  EXPECT_EQ(getIntOption(server.get(), IPPROTO_TCP, TCP_KEEPIDLE), 7 * 60);
  EXPECT_EQ(getIntOption(server.get(), IPPROTO_TCP, TCP_USER_TIMEOUT), 9000);
}

}  // namespace
}  // namespace derpd::testing
