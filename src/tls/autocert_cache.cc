#include "tls/autocert_cache.h"

#include <errno.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <string_view>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/clock.h"
#include "base/files.h"

namespace derpd::tls::autocert {
namespace {

// NotFound when the file does not exist.
absl::StatusOr<std::string> readCacheFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return absl::ErrnoToStatus(errno, absl::StrCat("read ", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status makeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(errno, absl::StrCat("create certificate directory ", dir));
  }
  return absl::OkStatus();
}

}  // namespace

std::string certPath(const std::string& dir, absl::string_view host, bool rsa) {
  return joinPath(dir, rsa ? absl::StrCat(host, "+rsa") : std::string(host));
}

std::string accountKeyPath(const std::string& dir) { return joinPath(dir, "acme_account+key"); }
std::string legacyAccountKeyPath(const std::string& dir) {
  return joinPath(dir, "acme_account.key");
}

absl::Status checkHostName(absl::string_view host) {
  if (host.empty() || host.size() > 253) {
    return absl::InvalidArgumentError(absl::StrCat("\"", host, "\" is not a DNS name"));
  }
  size_t label = 0;
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", host, "\" is not a DNS name (character '", std::string(1, c), "')"));
    }
    if (c == '.') {
      if (label == 0) {
        return absl::InvalidArgumentError(absl::StrCat("\"", host, "\" has an empty label"));
      }
      label = 0;
    } else {
      label++;
    }
  }
  if (label == 0) return absl::InvalidArgumentError(absl::StrCat("\"", host, "\" ends with '.'"));
  return absl::OkStatus();
}

absl::StatusOr<std::string> formatEntry(const CertifiedKey& cert) {
  absl::StatusOr<std::string> key = keyToPem(cert.key.get());
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> chain = chainToPem(cert);
  if (!chain.ok()) return chain.status();
  return absl::StrCat(*key, *chain);
}

absl::StatusOr<CertifiedKey> parseEntry(absl::string_view pem, absl::string_view what) {
  // The key and the chain are PEM blocks of one text: each reader takes the
  // blocks of its kind and passes over the others.
  const std::string_view text(pem.data(), pem.size());
  return parsePem(text, text, std::string_view(what.data(), what.size()));
}

absl::StatusOr<CertifiedKey> loadCert(const std::string& dir, absl::string_view host,
                                      int64_t nowUnix) {
  std::string path = certPath(dir, host);
  absl::StatusOr<std::string> text = readCacheFile(path);
  if (absl::IsNotFound(text.status())) {
    path = certPath(dir, host, /*rsa=*/true);
    text = readCacheFile(path);
  }
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(absl::StrCat("no certificate for ", host, " in ", dir, " (neither ",
                                            certPath(dir, host), " nor its +rsa twin)"));
  }
  if (!text.ok()) return text.status();
  absl::StatusOr<CertifiedKey> cert = parseEntry(*text, path);
  if (!cert.ok()) return cert.status();
  if (!matchesHost(*cert, std::string_view(host.data(), host.size()))) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not valid for ", host, " (it names: ", absl::StrJoin(cert->names, ", "), ")"));
  }
  if (cert->notBeforeUnix > nowUnix) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": not valid before ", formatUtc(cert->notBeforeUnix)));
  }
  if (cert->notAfterUnix <= nowUnix) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": expired at ", formatUtc(cert->notAfterUnix)));
  }
  return cert;
}

absl::Status storeCert(const std::string& dir, absl::string_view host, const CertifiedKey& cert) {
  if (absl::Status s = checkHostName(host); !s.ok()) return s;
  absl::StatusOr<std::string> entry = formatEntry(cert);
  if (!entry.ok()) return entry.status();
  if (absl::Status s = makeDir(dir); !s.ok()) return s;
  const bool rsa = EVP_PKEY_id(cert.key.get()) == EVP_PKEY_RSA;
  return writeFileAtomically(certPath(dir, host, rsa), *entry, 0600);
}

absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> loadOrCreateAccountKey(const std::string& dir) {
  for (const std::string& path : {accountKeyPath(dir), legacyAccountKeyPath(dir)}) {
    absl::StatusOr<std::string> text = readCacheFile(path);
    if (absl::IsNotFound(text.status())) continue;
    if (!text.ok()) return text.status();
    bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
    bssl::UniquePtr<EVP_PKEY> key(
        bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!key) {
      ERR_clear_error();
      return absl::InvalidArgumentError(absl::StrCat(path, ": not a PEM private key"));
    }
    return key;
  }
  bssl::UniquePtr<EVP_PKEY> key = newP256Key();
  if (!key) return absl::InternalError("generating the ACME account key failed");
  absl::StatusOr<std::string> pem = keyToPem(key.get());
  if (!pem.ok()) return pem.status();
  if (absl::Status s = makeDir(dir); !s.ok()) return s;
  if (absl::Status s = writeFileAtomically(accountKeyPath(dir), *pem, 0600); !s.ok()) return s;
  return key;
}

}  // namespace derpd::tls::autocert
