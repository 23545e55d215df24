// idle_tls_rss: the server's memory per idle, handshaken TLS connection
// (PERFORMANCE.md: <= 8 KiB at 10k clients).
//
// Connects a few warm-up clients, reads the server's VmRSS, connects N more
// TLS DERP clients from several threads (certificate not checked) and holds
// them idle; after a settle time reads VmRSS again and reports
// (after - before) / N. Also checks that the server kept every connection
// and reads VmRSS once more after they all close. JSON on stdout, a readable
// line on stderr. The client side frees its read buffers after each
// handshake so that one process can hold 10k+ connections.
//
//   idle_tls_rss --port P --server-pid PID [--host 127.0.0.1] [--count 10000]
//                [--threads 4] [--warmup 16] [--settle 1] [--seconds 120] [--plain]
#include <poll.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/derp_client.h"
#include "proc_stats.h"

namespace {

using namespace derpd;
using SteadyClock = std::chrono::steady_clock;

struct Args {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  pid_t serverPid = 0;
  int count = 10000;
  int threads = 4;
  int warmup = 16;
  double settle = 1;
  double seconds = 120;  // bound on connecting
  bool tls = true;
};

bool parseArgs(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; i++) {
    std::string k = argv[i];
    if (k == "--plain") {
      a.tls = false;
      continue;
    }
    if (i + 1 >= argc) return false;
    std::string v = argv[++i];
    if (k == "--host") a.host = v;
    else if (k == "--port") a.port = static_cast<uint16_t>(std::stoi(v));
    else if (k == "--server-pid") a.serverPid = static_cast<pid_t>(std::stoi(v));
    else if (k == "--count") a.count = std::stoi(v);
    else if (k == "--threads") a.threads = std::stoi(v);
    else if (k == "--warmup") a.warmup = std::stoi(v);
    else if (k == "--settle") a.settle = std::stod(v);
    else if (k == "--seconds") a.seconds = std::stod(v);
    else return false;
  }
  return a.port != 0 && a.serverPid > 0 && a.count > 0 && a.count <= 200000 && a.threads > 0 &&
         a.threads <= 64 && a.warmup >= 0 && a.settle >= 0 && a.settle <= 60 && a.seconds > 0 &&
         a.seconds <= 600;
}

struct Connected {
  std::vector<std::unique_ptr<client::DerpClient>> clients;
  int failures = 0;
  std::string firstError;
};

// Connects `n` clients from `threads` threads, each releasing its buffers.
Connected connectMany(const Args& a, int n, SteadyClock::time_point limit) {
  Connected out;
  out.clients.resize(static_cast<size_t>(n));
  std::atomic<int> next{0}, failures{0};
  std::vector<std::string> errors(static_cast<size_t>(a.threads));
  std::vector<std::thread> threads;
  for (int t = 0; t < a.threads; t++) {
    threads.emplace_back([&, t] {
      for (;;) {
        const int i = next.fetch_add(1, std::memory_order_relaxed);
        if (i >= n || SteadyClock::now() >= limit) return;
        client::ClientOptions o;
        o.host = a.host;
        o.port = a.port;
        o.tls = a.tls;
        o.insecure = true;
        o.timeout = 10 * kSecond;
        auto c = client::DerpClient::connect(o);
        if (!c.ok()) {
          if (failures.fetch_add(1) == 0 || errors[static_cast<size_t>(t)].empty()) {
            errors[static_cast<size_t>(t)] = std::string(c.status().message());
          }
          continue;
        }
        (*c)->releaseBuffers();
        out.clients[static_cast<size_t>(i)] = std::move(*c);
      }
    });
  }
  for (auto& th : threads) th.join();
  out.failures = failures.load();
  for (auto& e : errors) {
    if (out.firstError.empty()) out.firstError = e;
  }
  return out;
}

// How many of the clients' sockets the server has closed (hang-up or reset);
// idle connections may have keep-alives to read, which is fine.
int countClosed(const std::vector<std::unique_ptr<client::DerpClient>>& clients) {
  std::vector<pollfd> fds;
  for (auto& c : clients) {
    if (c) fds.push_back({c->fd(), POLLRDHUP, 0});
  }
  ::poll(fds.data(), fds.size(), 0);
  int closed = 0;
  for (auto& p : fds) {
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) closed++;
  }
  return closed;
}

void sleepSeconds(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parseArgs(argc, argv, a)) {
    std::fprintf(stderr,
                 "usage: idle_tls_rss --port P --server-pid PID [--host H] [--count N] "
                 "[--threads T] [--warmup W] [--settle S] [--seconds S] [--plain]\n");
    return 2;
  }
  const rlim_t want = 2 * static_cast<rlim_t>(a.count + a.warmup) + 1000;
  const rlim_t nofile = bench::raiseFileLimit(want);
  if (nofile < want) {
    std::fprintf(stderr, "note: RLIMIT_NOFILE raised only to %llu (wanted %llu)\n",
                 static_cast<unsigned long long>(nofile), static_cast<unsigned long long>(want));
  }
  const SteadyClock::time_point limit =
      SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                               std::chrono::duration<double>(a.seconds));

  Connected warm = connectMany(a, a.warmup, limit);
  sleepSeconds(a.settle);
  const long rssBefore = bench::processRssKiB(a.serverPid);
  const auto start = SteadyClock::now();
  Connected held = connectMany(a, a.count, limit);
  const double connectSecs = std::chrono::duration<double>(SteadyClock::now() - start).count();
  const int ok = static_cast<int>(std::count_if(held.clients.begin(), held.clients.end(),
                                                [](const auto& c) { return c != nullptr; }));
  sleepSeconds(a.settle);
  const long rssAfter = bench::processRssKiB(a.serverPid);
  const int closedByServer = countClosed(held.clients);
  const long selfRss = bench::processRssKiB(getpid());
  held.clients.clear();
  warm.clients.clear();
  sleepSeconds(a.settle);
  const long rssAfterClose = bench::processRssKiB(a.serverPid);

  const double perConn =
      ok > 0 ? static_cast<double>(rssAfter - rssBefore) / static_cast<double>(ok) : 0;
  std::printf("{\"tls\":%s,\"connections\":%d,\"requested\":%d,\"failures\":%d,"
              "\"closed_by_server\":%d,\"connect_seconds\":%.2f,\"server_rss_before_kib\":%ld,"
              "\"server_rss_after_kib\":%ld,\"server_rss_after_close_kib\":%ld,"
              "\"kib_per_connection\":%.2f,\"client_rss_kib\":%ld,\"nofile\":%llu",
              a.tls ? "true" : "false", ok, a.count, held.failures, closedByServer, connectSecs,
              rssBefore, rssAfter, rssAfterClose, perConn, selfRss,
              static_cast<unsigned long long>(nofile));
  if (!held.firstError.empty()) std::printf(",\"first_error\":\"%s\"", held.firstError.c_str());
  std::printf("}\n");
  std::fflush(stdout);
  std::fprintf(stderr,
               "%s idle: %d connections (%d failed, %d closed by the server) in %.1f s; server RSS "
               "%ld -> %ld KiB = %.2f KiB per connection; %ld KiB after they closed\n",
               a.tls ? "TLS" : "plain", ok, held.failures, closedByServer, connectSecs, rssBefore,
               rssAfter, perConn, rssAfterClose);
  if (!held.firstError.empty()) std::fprintf(stderr, "first error: %s\n", held.firstError.c_str());
  return ok == a.count && closedByServer == 0 ? 0 : 1;
}
