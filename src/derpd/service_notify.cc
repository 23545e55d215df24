#include "derpd/service_notify.h"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "relay/server.h"

namespace derpd {

ServiceNotifier::ServiceNotifier(const Clock& clock) : clock_(clock) {
  uint64_t usec = 0;
  // > 0 only when WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is us).
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    // Half the interval, as sd_watchdog_enabled(3) advises, so one late turn
    // of the loop is not yet a missed keep-alive.
    watchdogEvery_ = static_cast<Nanos>(usec) * kMicrosecond / 2;
    nextKeepAlive_ = clock_.now() + watchdogEvery_;
    logInfo("systemd watchdog: keep-alive every %.3fs",
            static_cast<double>(watchdogEvery_) / kSecond);
  }
}

void ServiceNotifier::ready(absl::string_view status) {
  readyStatus_ = std::string(status);
  send(absl::StrCat("READY=1\nSTATUS=", readyStatus_));
}

void ServiceNotifier::reloading() {
  send(absl::StrCat("RELOADING=1\nSTATUS=reloading certificates\nMONOTONIC_USEC=",
                    clock_.now() / kMicrosecond));
}

void ServiceNotifier::reloaded() { send(absl::StrCat("READY=1\nSTATUS=", readyStatus_)); }

void ServiceNotifier::stopping(absl::string_view status) {
  if (stopping_) return;
  stopping_ = true;
  send(absl::StrCat("STOPPING=1\nSTATUS=", status));
}

int ServiceNotifier::pollTimeoutMs(int wantedMs) const {
  if (watchdogEvery_ == 0) return wantedMs;
  Nanos left = std::max<Nanos>(nextKeepAlive_ - clock_.now(), 0);
  // Round up: waking a moment early would only spin the loop once more.
  int dueMs = static_cast<int>((left + kMillisecond - 1) / kMillisecond);
  return wantedMs < 0 ? dueMs : std::min(wantedMs, dueMs);
}

void ServiceNotifier::keepAlive() {
  if (watchdogEvery_ == 0) return;
  Nanos now = clock_.now();
  if (now < nextKeepAlive_) return;
  send("WATCHDOG=1");
  nextKeepAlive_ = now + watchdogEvery_;
}

void ServiceNotifier::send(const std::string& state) {
  int rc = sd_notify(0, state.c_str());
  // rc == 0: not run by a service manager (no NOTIFY_SOCKET).
  if (rc < 0 && !sendFailed_) {
    sendFailed_ = true;  // once: a broken socket would otherwise log every keep-alive
    logWarn("sd_notify to $NOTIFY_SOCKET failed: %s", std::strerror(-rc));
  }
}

std::string listeningStatus(const relay::Server& server, bool tls) {
  std::string status =
      absl::StrCat("listening on ", tls ? "https://" : "http://", server.boundAddress().toString());
  if (server.httpAddress()) {
    absl::StrAppend(&status, ", http://", server.httpAddress()->toString());
  }
  if (server.stunAddress()) {
    absl::StrAppend(&status, ", STUN udp://", server.stunAddress()->toString());
  }
  absl::StrAppend(&status, " (", server.shardCount(), " shards)");
  return status;
}

}  // namespace derpd
