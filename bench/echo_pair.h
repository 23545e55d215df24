// One echo pair's two halves (echo_scenario.cc), shared with the scenarios
// that measure round trips beside a load (ratelimit).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "client/derp_client.h"
#include "latency_histogram.h"

namespace derpd::bench {

struct PingerResult {
  LatencyHistogram rtt;
  uint64_t roundTrips = 0;
  uint64_t lost = 0;  // given up after 500 ms without an answer
  std::string error;
};

// Keeps `window` stamped packets of `size` bytes in flight to `peer` until
// stopAt, recording each round trip.
void pinger(client::DerpClient& c, derp::NodeKey peer, size_t size, int window,
            std::chrono::steady_clock::time_point stopAt, PingerResult& out);
// Sends every packet it receives straight back to `peer` until stop.
void echoer(client::DerpClient& c, derp::NodeKey peer, const std::atomic<bool>& stop,
            std::string& error);

}  // namespace derpd::bench
