// The native side of the DERP-over-WebSocket tests (websocket_test,
// chromium_test): an external client (ws_derp_client.py, or a page in
// chromium) sends three packets of 10, 1280 and 60,000 bytes to a native
// raw-DERP client through derpd and receives three back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "client/derp_client.h"

namespace derpd::testing {

inline constexpr size_t kWsPacketSizes[] = {10, 1280, 60000};

// The packet bytes both sides make: "tag:i:", then (k * 7 + i) % 256.
std::vector<uint8_t> wsTestPayload(const std::string& tag, int i, size_t size);

// Runs argv plus "--key PRIV --peer NATIVE" (a fresh key) to completion in a
// thread while `native` checks the three packets from it and answers with
// three; the client must exit 0 and print "ok". Failures are the test's.
void relayWithExternalClient(std::vector<std::string> argv, client::DerpClient& native);

}  // namespace derpd::testing
