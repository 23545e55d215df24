#include "tls/buffer_bio.h"

#include <openssl/bio.h>

#include <cstring>

namespace derpd::tls {
namespace {

int bioRead(BIO* bio, char* out, int len) {
  auto* st = static_cast<BufferBioState*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (st->inLen == 0) {
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t n = std::min(st->inLen, static_cast<size_t>(len));
  std::memcpy(out, st->in, n);
  st->in += n;
  st->inLen -= n;
  return static_cast<int>(n);
}

int bioWrite(BIO* bio, const char* data, int len) {
  auto* st = static_cast<BufferBioState*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (len <= 0) return 0;
  if (!st->sink(st->ctx, reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(len))) {
    return -1;
  }
  return len;
}

long bioCtrl(BIO*, int cmd, long, void*) {
  // BoringSSL flushes after writing a flight; our sink has already taken it.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int bioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* bufferMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "derpd-buffer");
    BIO_meth_set_read(m, bioRead);
    BIO_meth_set_write(m, bioWrite);
    BIO_meth_set_ctrl(m, bioCtrl);
    BIO_meth_set_create(m, bioCreate);
    return m;
  }();
  return method;
}

}  // namespace

BIO* newBufferBio(BufferBioState* state) {
  BIO* bio = BIO_new(bufferMethod());
  if (bio != nullptr) BIO_set_data(bio, state);
  return bio;
}

}  // namespace derpd::tls
