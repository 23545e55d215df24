// BufferBio: the BIO between BoringSSL and a connection's own buffers.
//
// Reads come from the span the caller sets (the provided receive buffer the
// kernel filled), so ciphertext is never staged in a BIO of its own; writes
// (sealed records) go to the caller's sink, which appends them to the
// connection's outgoing chain. Nothing here blocks or touches a socket: when
// the input is used up a read says "retry", and SSL_read/SSL_do_handshake
// return SSL_ERROR_WANT_READ until the next receive.
#pragma once

#include <cstddef>
#include <cstdint>

#include <openssl/base.h>

namespace derpd::tls {

struct BufferBioState {
  // Appends n bytes of ciphertext; false when out of memory (the BIO then fails
  // the write and the TLS session errors out).
  using Sink = bool (*)(void* ctx, const uint8_t* data, size_t n);

  const uint8_t* in = nullptr;  // ciphertext not yet consumed by BoringSSL
  size_t inLen = 0;
  Sink sink = nullptr;
  void* ctx = nullptr;
};

// A BIO over `state`, which the caller owns and keeps alive as long as the BIO
// (typically both live in the connection). The BIO is returned with one
// reference, which SSL_set_bio takes over.
BIO* newBufferBio(BufferBioState* state);

}  // namespace derpd::tls
