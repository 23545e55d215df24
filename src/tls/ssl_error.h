// BoringSSL's thread-local error queue as text.
#pragma once

#include <string>

namespace derpd::tls {

// Drains the queue into one line ("a; b"); "unknown TLS error" when empty.
std::string drainSslErrors();

}  // namespace derpd::tls
