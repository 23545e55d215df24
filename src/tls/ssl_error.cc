#include "tls/ssl_error.h"

#include <openssl/err.h>

namespace derpd::tls {

std::string drainSslErrors() {
  std::string text;
  while (uint32_t e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text.empty() ? "unknown TLS error" : text;
}

}  // namespace derpd::tls
