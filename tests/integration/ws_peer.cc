#include "integration/ws_peer.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "base/hex.h"
#include "derp/key.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/derpd_process.h"
#include "integration/test_support.h"

namespace derpd::testing {

std::vector<uint8_t> wsTestPayload(const std::string& tag, int i, size_t size) {
  std::string head = absl::StrCat(tag, ":", i, ":");
  std::vector<uint8_t> out(head.begin(), head.end());
  for (size_t k = 0; out.size() < size; k++) {
    out.push_back(static_cast<uint8_t>((k * 7 + static_cast<size_t>(i)) % 256));
  }
  return out;
}

void relayWithExternalClient(std::vector<std::string> argv, client::DerpClient& native) {
  const derp::PrivateKey key = derp::PrivateKey::generate();
  const derp::NodeKey pub = key.publicKey();
  argv.insert(argv.end(), {"--key", hexEncode(key.bytes), "--peer", native.publicKey().hex()});
  absl::StatusOr<CommandResult> result;
  std::thread client([&] { result = runCommand(argv, {}, 60 * kSecond); });
  for (int i = 0; i < 3; i++) {
    absl::StatusOr<client::DerpClient::Packet> p = native.recvPacket(45 * kSecond);
    if (!p.ok()) {
      ADD_FAILURE() << "packet " << i << " from the WebSocket client: " << p.status();
      break;
    }
    EXPECT_EQ(p->src, pub);
    EXPECT_EQ(p->payload, wsTestPayload("ws-to-native", i, kWsPacketSizes[i])) << "packet " << i;
  }
  for (int i = 0; i < 3; i++) {
    EXPECT_OK(native.sendPacket(pub, wsTestPayload("native-to-ws", i, kWsPacketSizes[i])));
  }
  client.join();
  ASSERT_OK(result.status());
  EXPECT_EQ(result->exitCode, 0) << result->out << result->err;
  EXPECT_THAT(result->out, ::testing::HasSubstr("ok"));
}

}  // namespace derpd::testing
