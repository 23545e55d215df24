// ServiceNotifier: tells the service manager (systemd, Type=notify) what derpd
// is doing: READY=1 once it listens, RELOADING=1 ... READY=1 around a
// certificate reload, STOPPING=1 when a drain or stop begins, and WATCHDOG=1
// keep-alives when the unit has WatchdogSec=.
//
// Outside systemd (no NOTIFY_SOCKET) every call does nothing. Owned and called
// by the main thread only: the watchdog is fed from its poll loop, so a main
// thread that stops turning its loop is what the watchdog catches.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "base/clock.h"

namespace derpd {

namespace relay {
class Server;
}

class ServiceNotifier {
 public:
  // Reads NOTIFY_SOCKET and WATCHDOG_USEC (with WATCHDOG_PID, if set, naming
  // this process) from the environment.
  explicit ServiceNotifier(const Clock& clock);

  // READY=1 with STATUS=status: derpd is serving.
  void ready(absl::string_view status);
  // RELOADING=1 (with MONOTONIC_USEC, which newer systemd wants with it) and,
  // once the reload is over, READY=1 again with the status ready() gave.
  void reloading();
  void reloaded();
  // STOPPING=1 with STATUS=status; only the first call sends anything.
  void stopping(absl::string_view status);

  // The poll timeout for the main loop: wantedMs (-1: none) shortened so the
  // loop wakes when the next watchdog keep-alive is due.
  int pollTimeoutMs(int wantedMs) const;
  // Sends WATCHDOG=1 when half the watchdog interval has passed since the
  // last one. Call on every turn of the loop.
  void keepAlive();

 private:
  void send(const std::string& state);

  const Clock& clock_;
  Nanos watchdogEvery_ = 0;  // 0: no watchdog
  Nanos nextKeepAlive_ = 0;
  bool stopping_ = false;
  bool sendFailed_ = false;
  std::string readyStatus_;
};

// "listening on https://A, http://B, STUN udp://C (N shards)": the STATUS=
// line systemctl status shows.
std::string listeningStatus(const relay::Server& server, bool tls);

}  // namespace derpd
