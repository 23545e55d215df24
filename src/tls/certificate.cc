#include "tls/certificate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/obj.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/files.h"
#include "base/hex.h"
#include "base/unique_fd.h"

namespace derpd::tls {
namespace {

// Certificate and key files are a few KiB; the cap stops a mistaken path (a
// device, a huge file) from being read without end.
constexpr size_t kMaxPemFileLen = 1 << 20;
constexpr int64_t kSelfSignedLifetimeSeconds = 365 * 24 * 3600;

struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* names) const { GENERAL_NAMES_free(names); }
};
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter>;

struct ExtendedKeyUsageDeleter {
  void operator()(EXTENDED_KEY_USAGE* eku) const { EXTENDED_KEY_USAGE_free(eku); }
};

// The reason of the oldest queued BoringSSL error (the one nearest the cause),
// and an empty queue afterwards so the next operation starts clean.
std::string takeSslError() {
  const uint32_t err = ERR_peek_error();
  ERR_clear_error();
  if (err == 0) return "unknown error";
  const char* reason = ERR_reason_error_string(err);
  return reason != nullptr ? reason : "unknown error";
}

bool queuedErrorIsNoPemBlock() {
  const uint32_t err = ERR_peek_last_error();
  return ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
}

absl::Status internalSslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", takeSslError()));
}

absl::StatusOr<std::string> readFile(const std::string& path, absl::string_view what) {
  return readSmallFile(path, kMaxPemFileLen, what);
}

bssl::UniquePtr<BIO> memBio(std::string_view data) {
  // Callers cap the size (kMaxPemFileLen), so it fits an int.
  return bssl::UniquePtr<BIO>(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

bssl::UniquePtr<CRYPTO_BUFFER> toBuffer(X509* x509) {
  uint8_t* der = nullptr;
  const int len = i2d_X509(x509, &der);
  if (len <= 0) return nullptr;
  bssl::UniquePtr<CRYPTO_BUFFER> buf(CRYPTO_BUFFER_new(der, static_cast<size_t>(len), nullptr));
  OPENSSL_free(der);
  return buf;
}

// 4 bytes for IPv4, 16 for IPv6; nullopt if `text` is not an IP literal.
std::optional<std::vector<uint8_t>> parseIp(std::string_view text) {
  const std::string s(text);
  std::array<uint8_t, 16> addr{};
  if (inet_pton(AF_INET, s.c_str(), addr.data()) == 1) {
    return std::vector<uint8_t>(addr.begin(), addr.begin() + 4);
  }
  if (inet_pton(AF_INET6, s.c_str(), addr.data()) == 1) {
    return std::vector<uint8_t>(addr.begin(), addr.end());
  }
  return std::nullopt;
}

// IPv4 as the IPv4-mapped IPv6 form, so 1.2.3.4 and ::ffff:1.2.3.4 compare
// equal as Go's net.IP.Equal has them.
std::vector<uint8_t> ipAs16(std::span<const uint8_t> ip) {
  if (ip.size() == 16) return {ip.begin(), ip.end()};
  std::vector<uint8_t> out(16, 0);
  out[10] = 0xff;
  out[11] = 0xff;
  std::copy(ip.begin(), ip.end(), out.begin() + 12);
  return out;
}

std::string ipText(std::span<const uint8_t> ip) {
  char text[INET6_ADDRSTRLEN] = {};
  const int family = ip.size() == 4 ? AF_INET : AF_INET6;
  if (inet_ntop(family, ip.data(), text, sizeof(text)) == nullptr) return {};
  return text;
}

absl::string_view asView(const ASN1_STRING* s) {
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
          static_cast<size_t>(ASN1_STRING_length(s))};
}

GeneralNamesPtr subjectAltNames(const X509* x509) {
  return GeneralNamesPtr(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x509, NID_subject_alt_name, nullptr, nullptr)));
}

std::vector<std::string> namesOf(const X509* x509) {
  std::vector<std::string> names;
  if (GeneralNamesPtr sans = subjectAltNames(x509)) {
    for (size_t i = 0; i < sk_GENERAL_NAME_num(sans.get()); i++) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans.get(), i);
      if (gn->type == GEN_DNS) {
        names.push_back(absl::AsciiStrToLower(asView(gn->d.dNSName)));
      } else if (gn->type == GEN_IPADD) {
        const absl::string_view ip = asView(gn->d.iPAddress);
        if (ip.size() != 4 && ip.size() != 16) continue;
        names.push_back(ipText({reinterpret_cast<const uint8_t*>(ip.data()), ip.size()}));
      }
    }
  }
  if (!names.empty()) return names;
  const X509_NAME* subject = X509_get_subject_name(x509);
  const int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (idx < 0) return names;
  uint8_t* utf8 = nullptr;
  const int len =
      ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)));
  if (len > 0) {
    names.push_back(absl::AsciiStrToLower(absl::string_view(reinterpret_cast<char*>(utf8), len)));
  }
  OPENSSL_free(utf8);
  return names;
}

std::optional<int64_t> toUnix(const ASN1_TIME* t) {
  bssl::UniquePtr<ASN1_TIME> epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0;
  int seconds = 0;
  if (!epoch || !ASN1_TIME_diff(&days, &seconds, epoch.get(), t)) return std::nullopt;
  return int64_t{days} * 86400 + seconds;
}

// Fills names and the validity from the leaf (chain[0]).
absl::Status describeLeaf(CertifiedKey& cert, X509* leaf, absl::string_view what) {
  cert.names = namesOf(leaf);
  std::optional<int64_t> notBefore = toUnix(X509_get0_notBefore(leaf));
  std::optional<int64_t> notAfter = toUnix(X509_get0_notAfter(leaf));
  if (!notBefore || !notAfter) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(what, ": unreadable validity time"));
  }
  cert.notBeforeUnix = *notBefore;
  cert.notAfterUnix = *notAfter;
  return absl::OkStatus();
}

absl::StatusOr<CertifiedKey> parsePair(std::string_view crtPem, std::string_view keyPem,
                                       absl::string_view crtWhat, absl::string_view keyWhat) {
  ERR_clear_error();
  CertifiedKey cert;
  bssl::UniquePtr<X509> leaf;
  bssl::UniquePtr<BIO> crtBio = memBio(crtPem);
  if (!crtBio) return absl::ResourceExhaustedError("out of memory");
  for (;;) {
    bssl::UniquePtr<X509> x509(PEM_read_bio_X509(crtBio.get(), nullptr, nullptr, nullptr));
    if (!x509) {
      if (queuedErrorIsNoPemBlock()) break;  // the end of the file
      return absl::InvalidArgumentError(absl::StrCat(
          crtWhat, ": certificate #", cert.chain.size() + 1, " is malformed: ", takeSslError()));
    }
    bssl::UniquePtr<CRYPTO_BUFFER> der = toBuffer(x509.get());
    if (!der) return internalSslError(crtWhat);
    cert.chain.push_back(std::move(der));
    if (!leaf) leaf = std::move(x509);
  }
  ERR_clear_error();
  if (cert.chain.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(crtWhat, ": no CERTIFICATE block (is it a PEM certificate file?)"));
  }

  bssl::UniquePtr<BIO> keyBio = memBio(keyPem);
  if (!keyBio) return absl::ResourceExhaustedError("out of memory");
  // No password callback: BoringSSL's default never prompts, so an encrypted
  // key fails here instead of blocking on a terminal.
  cert.key.reset(PEM_read_bio_PrivateKey(keyBio.get(), nullptr, nullptr, nullptr));
  if (!cert.key) {
    if (queuedErrorIsNoPemBlock()) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat(keyWhat, ": no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(keyWhat, ": malformed or encrypted private key: ", takeSslError()));
  }
  bssl::UniquePtr<EVP_PKEY> leafKey(X509_get_pubkey(leaf.get()));
  if (!leafKey) {
    return absl::InvalidArgumentError(absl::StrCat(
        crtWhat, ": unsupported public key in the first certificate: ", takeSslError()));
  }
  if (EVP_PKEY_cmp(leafKey.get(), cert.key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        keyWhat, " does not match the public key of the first certificate in ", crtWhat));
  }
  if (absl::Status s = describeLeaf(cert, leaf.get(), crtWhat); !s.ok()) return s;
  return cert;
}

// Like X509_NAME with one CN, as Go's pkix.Name{CommonName: cn} marshals it
// when cn is printable.
bssl::UniquePtr<X509_NAME> commonName(absl::string_view cn) {
  bssl::UniquePtr<X509_NAME> name(X509_NAME_new());
  if (!name || !X509_NAME_add_entry_by_NID(name.get(), NID_commonName, V_ASN1_PRINTABLESTRING,
                                           reinterpret_cast<const uint8_t*>(cn.data()),
                                           static_cast<int>(cn.size()), -1, 0)) {
    return nullptr;
  }
  return name;
}

bool setValidity(X509* x509, int64_t notBeforeUnix, int64_t notAfterUnix) {
  // ASN1_TIME_set picks UTCTime for 1950..2049 and GeneralizedTime outside, as
  // RFC 5280 and Go do.
  bssl::UniquePtr<ASN1_TIME> from(ASN1_TIME_set(nullptr, static_cast<time_t>(notBeforeUnix)));
  bssl::UniquePtr<ASN1_TIME> to(ASN1_TIME_set(nullptr, static_cast<time_t>(notAfterUnix)));
  return from && to && X509_set1_notBefore(x509, from.get()) && X509_set1_notAfter(x509, to.get());
}

// A self-issued certificate skeleton: v3, the serial, subject = issuer = CN,
// the validity and the public key.
bssl::UniquePtr<X509> newSelfIssued(const ASN1_INTEGER* serial, absl::string_view cn,
                                    int64_t notBeforeUnix, int64_t notAfterUnix, EVP_PKEY* key) {
  bssl::UniquePtr<X509> x509(X509_new());
  bssl::UniquePtr<X509_NAME> name = commonName(cn);
  if (!x509 || !name || !X509_set_version(x509.get(), X509_VERSION_3) ||
      !X509_set_serialNumber(x509.get(), serial) ||
      !X509_set_subject_name(x509.get(), name.get()) ||
      !X509_set_issuer_name(x509.get(), name.get()) ||
      !setValidity(x509.get(), notBeforeUnix, notAfterUnix) || !X509_set_pubkey(x509.get(), key)) {
    return nullptr;
  }
  return x509;
}

bool addBasicConstraintsNotCa(X509* x509) {
  bssl::UniquePtr<BASIC_CONSTRAINTS> bc(BASIC_CONSTRAINTS_new());
  if (!bc) return false;
  bc->ca = 0;  // DEFAULT FALSE, so it encodes as an empty SEQUENCE
  return X509_add1_ext_i2d(x509, NID_basic_constraints, bc.get(), /*crit=*/1, X509V3_ADD_DEFAULT) ==
         1;
}

bool addServerExtensions(X509* x509, std::span<const uint8_t> ip) {
  bssl::UniquePtr<ASN1_BIT_STRING> ku(ASN1_BIT_STRING_new());
  if (!ku || !ASN1_BIT_STRING_set_bit(ku.get(), 0, 1) ||  // digitalSignature
      !ASN1_BIT_STRING_set_bit(ku.get(), 2, 1) ||         // keyEncipherment
      X509_add1_ext_i2d(x509, NID_key_usage, ku.get(), 1, X509V3_ADD_DEFAULT) != 1) {
    return false;
  }
  std::unique_ptr<EXTENDED_KEY_USAGE, ExtendedKeyUsageDeleter> eku(EXTENDED_KEY_USAGE_new());
  if (!eku || !sk_ASN1_OBJECT_push(eku.get(), OBJ_nid2obj(NID_server_auth)) ||
      X509_add1_ext_i2d(x509, NID_ext_key_usage, eku.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return false;
  }
  if (!addBasicConstraintsNotCa(x509)) return false;
  GeneralNamesPtr sans(GENERAL_NAMES_new());
  bssl::UniquePtr<GENERAL_NAME> gn(GENERAL_NAME_new());
  bssl::UniquePtr<ASN1_OCTET_STRING> addr(ASN1_OCTET_STRING_new());
  if (!sans || !gn || !addr ||
      !ASN1_OCTET_STRING_set(addr.get(), ip.data(), static_cast<int>(ip.size()))) {
    return false;
  }
  GENERAL_NAME_set0_value(gn.get(), GEN_IPADD, addr.release());
  if (!sk_GENERAL_NAME_push(sans.get(), gn.get())) return false;
  gn.release();
  return X509_add1_ext_i2d(x509, NID_subject_alt_name, sans.get(), 0, X509V3_ADD_DEFAULT) == 1;
}

// Go's crypto/x509 hostname rule: one leftmost "*" label matching exactly one
// label of the host, case-insensitive, and no partial wildcards.
bool dnsNameMatches(absl::string_view pattern, absl::string_view host) {
  if (absl::EqualsIgnoreCase(pattern, host)) return true;
  if (pattern.size() < 3 || pattern.substr(0, 2) != "*.") return false;
  const size_t dot = host.find('.');
  if (dot == absl::string_view::npos || dot == 0) return false;
  return absl::EqualsIgnoreCase(pattern.substr(1), host.substr(dot));
}

absl::Status writeAll(int fd, std::string_view data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, "write");
    off += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

std::string bioContents(BIO* bio) {
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (!BIO_mem_contents(bio, &data, &len)) return {};
  return std::string(reinterpret_cast<const char*>(data), len);
}

}  // namespace

// Writes through a temporary file renamed into place, so a reader (or the
// reload watcher) never sees half a file and a crash leaves the old one.
absl::Status writeFileAtomically(const std::string& path, std::string_view data, mode_t mode) {
  std::string tmp = path + ".tmp-XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("create ", tmp));
  absl::Status s = absl::OkStatus();
  // fchmod, not the umask: the modes are part of derper's contract.
  if (::fchmod(fd.get(), mode) != 0) s = absl::ErrnoToStatus(errno, "fchmod");
  if (s.ok()) s = writeAll(fd.get(), data);
  if (s.ok() && ::fsync(fd.get()) != 0) s = absl::ErrnoToStatus(errno, "fsync");
  fd.reset();
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = absl::ErrnoToStatus(errno, "rename");
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> keyToPem(EVP_PKEY* key) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio) return absl::ResourceExhaustedError("out of memory");
  int ok = 0;
  switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_EC:
      ok = PEM_write_bio_ECPrivateKey(bio.get(), EVP_PKEY_get0_EC_KEY(key), nullptr, nullptr, 0,
                                      nullptr, nullptr);
      break;
    case EVP_PKEY_RSA:
      ok = PEM_write_bio_RSAPrivateKey(bio.get(), EVP_PKEY_get0_RSA(key), nullptr, nullptr, 0,
                                       nullptr, nullptr);
      break;
    default:
      ok = PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  }
  if (!ok) return internalSslError("encode private key");
  return bioContents(bio.get());
}

absl::StatusOr<std::string> chainToPem(const CertifiedKey& cert) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio) return absl::ResourceExhaustedError("out of memory");
  for (const auto& der : cert.chain) {
    if (!PEM_write_bio(bio.get(), "CERTIFICATE", "", CRYPTO_BUFFER_data(der.get()),
                       static_cast<long>(CRYPTO_BUFFER_len(der.get())))) {
      return internalSslError("encode certificate");
    }
  }
  return bioContents(bio.get());
}

CertifiedKey CertifiedKey::share() const {
  CertifiedKey out;
  for (const auto& der : chain) {
    CRYPTO_BUFFER_up_ref(der.get());
    out.chain.emplace_back(der.get());
  }
  if (key) {
    EVP_PKEY_up_ref(key.get());
    out.key.reset(key.get());
  }
  out.names = names;
  out.notBeforeUnix = notBeforeUnix;
  out.notAfterUnix = notAfterUnix;
  return out;
}

std::span<const uint8_t> CertifiedKey::leafDer() const {
  if (chain.empty()) return {};
  return {CRYPTO_BUFFER_data(chain[0].get()), CRYPTO_BUFFER_len(chain[0].get())};
}

absl::StatusOr<CertifiedKey> loadPemFiles(const std::string& crtPath, const std::string& keyPath) {
  absl::StatusOr<std::string> crt = readFile(crtPath, "certificate file");
  if (!crt.ok()) return crt.status();
  absl::StatusOr<std::string> key = readFile(keyPath, "key file");
  if (!key.ok()) return key.status();
  return parsePair(*crt, *key, absl::StrCat("certificate file ", crtPath),
                   absl::StrCat("key file ", keyPath));
}

absl::StatusOr<CertifiedKey> parsePem(std::string_view crtPem, std::string_view keyPem,
                                      std::string_view what) {
  const absl::string_view name(what.data(), what.size());
  return parsePair(crtPem, keyPem, absl::StrCat(name, " certificate"), absl::StrCat(name, " key"));
}

bool matchesHost(const CertifiedKey& cert, std::string_view host) {
  // From the SAN extension itself rather than `names`, which cannot tell a
  // DNS name from an IP and falls back to the CN, which clients ignore.
  std::span<const uint8_t> der = cert.leafDer();
  const uint8_t* p = der.data();
  bssl::UniquePtr<X509> leaf(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!leaf) {
    ERR_clear_error();
    return false;
  }
  GeneralNamesPtr sans = subjectAltNames(leaf.get());
  ERR_clear_error();
  if (!sans) return false;
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  const std::optional<std::vector<uint8_t>> ip = parseIp(host);
  for (size_t i = 0; i < sk_GENERAL_NAME_num(sans.get()); i++) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans.get(), i);
    if (ip && gn->type == GEN_IPADD) {
      const absl::string_view san = asView(gn->d.iPAddress);
      if (san.size() != 4 && san.size() != 16) continue;
      if (ipAs16({reinterpret_cast<const uint8_t*>(san.data()), san.size()}) == ipAs16(*ip)) {
        return true;
      }
    } else if (!ip && gn->type == GEN_DNS &&
               dnsNameMatches(asView(gn->d.dNSName), {host.data(), host.size()})) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<CertifiedKey> generateSelfSignedIp(std::string_view ip, int64_t nowUnix) {
  const std::optional<std::vector<uint8_t>> addr = parseIp(ip);
  if (!addr) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an IP address: ", absl::string_view(ip.data(), ip.size())));
  }
  return generateSelfSigned(ip, nowUnix, nowUnix + kSelfSignedLifetimeSeconds,
                            [&](X509* x509) { return addServerExtensions(x509, *addr); });
}

bssl::UniquePtr<EVP_PKEY> newP256Key() {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  if (!ec || !key || !EC_KEY_generate_key(ec.get()) || !EVP_PKEY_set1_EC_KEY(key.get(), ec.get())) {
    return nullptr;
  }
  return key;
}

absl::StatusOr<CertifiedKey> generateSelfSigned(std::string_view commonName, int64_t notBeforeUnix,
                                                int64_t notAfterUnix,
                                                const std::function<bool(X509*)>& addExtensions) {
  ERR_clear_error();
  bssl::UniquePtr<EVP_PKEY> key = newP256Key();
  if (!key) return internalSslError("generate P-256 key");
  // A uniformly random serial below 2^128, as derper draws it; zero is not a
  // valid serial (RFC 5280), so draw again in that 2^-128 case.
  bssl::UniquePtr<BIGNUM> serialBn(BN_new());
  if (!serialBn) return internalSslError("serial");
  do {
    if (!BN_rand(serialBn.get(), 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY)) {
      return internalSslError("serial");
    }
  } while (BN_is_zero(serialBn.get()));
  bssl::UniquePtr<ASN1_INTEGER> serial(BN_to_ASN1_INTEGER(serialBn.get(), nullptr));
  if (!serial) return internalSslError("serial");

  bssl::UniquePtr<X509> x509 =
      newSelfIssued(serial.get(), absl::string_view(commonName.data(), commonName.size()),
                    notBeforeUnix, notAfterUnix, key.get());
  if (!x509 || !addExtensions(x509.get()) || !X509_sign(x509.get(), key.get(), EVP_sha256())) {
    return internalSslError("build self-signed certificate");
  }
  CertifiedKey cert;
  bssl::UniquePtr<CRYPTO_BUFFER> der = toBuffer(x509.get());
  if (!der) return internalSslError("encode self-signed certificate");
  cert.chain.push_back(std::move(der));
  cert.key = std::move(key);
  if (absl::Status s = describeLeaf(cert, x509.get(), "self-signed certificate"); !s.ok()) {
    return s;
  }
  return cert;
}

absl::Status writePemFiles(const CertifiedKey& cert, const std::string& crtPath,
                           const std::string& keyPath) {
  if (cert.chain.empty() || !cert.key) {
    return absl::InvalidArgumentError("writePemFiles: empty certificate");
  }
  absl::StatusOr<std::string> crtPem = chainToPem(cert);
  if (!crtPem.ok()) return crtPem.status();
  absl::StatusOr<std::string> keyPem = keyToPem(cert.key.get());
  if (!keyPem.ok()) return keyPem.status();
  for (const std::string* path : {&crtPath, &keyPath}) {
    if (absl::Status s = makePrivateParentDirs(*path); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(*path, ": ", s.message()));
    }
  }
  // The key first: a certificate without its key in place would make a
  // concurrent reload fail, a key without its certificate is not looked at.
  if (absl::Status s = writeFileAtomically(keyPath, *keyPem, 0600); !s.ok()) return s;
  return writeFileAtomically(crtPath, *crtPem, 0644);
}

std::string describeCertificate(const CertifiedKey& cert, int64_t nowUnix) {
  const time_t t = static_cast<time_t>(cert.notAfterUnix);
  tm parts{};
  gmtime_r(&t, &parts);
  char until[32];
  std::strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &parts);
  const int64_t left = cert.notAfterUnix - nowUnix;
  const std::string when = left < 0
                               ? absl::StrCat("EXPIRED ", until, ", ", -left / 86400, " days ago")
                               : absl::StrCat("valid until ", until, " (", left / 86400, " days)");
  return absl::StrCat(absl::StrJoin(cert.names, ","), ": ", when, ", ", certName(cert));
}

bool expiresSoon(const CertifiedKey& cert, int64_t nowUnix) {
  return cert.notAfterUnix - nowUnix < kExpiringSoonSeconds;
}

std::string certName(const CertifiedKey& cert) {
  std::span<const uint8_t> der = cert.leafDer();
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(der.data(), der.size(), digest);
  return absl::StrCat("sha256-raw:", hexEncode(digest));
}

absl::StatusOr<bssl::UniquePtr<CRYPTO_BUFFER>> makeMetaCert(
    std::string_view serverPublicHex, std::span<const uint8_t, 32> ed25519Seed,
    int64_t notBeforeUnix, int64_t notAfterUnix) {
  const absl::string_view publicHex(serverPublicHex.data(), serverPublicHex.size());
  std::array<uint8_t, 32> publicKey;
  if (!hexDecodeInto(serverPublicHex, publicKey)) {
    return absl::InvalidArgumentError(
        absl::StrCat("meta-cert: server public key is not 64 hex digits: ", publicHex));
  }
  ERR_clear_error();
  bssl::UniquePtr<EVP_PKEY> key(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, ed25519Seed.data(), 32));
  bssl::UniquePtr<ASN1_INTEGER> serial(ASN1_INTEGER_new());
  // The serial is the DERP protocol version; clients read it from here.
  constexpr long kProtocolVersion = 2;
  if (!key || !serial || !ASN1_INTEGER_set(serial.get(), kProtocolVersion)) {
    return internalSslError("meta-cert key");
  }
  bssl::UniquePtr<X509> x509 = newSelfIssued(serial.get(), absl::StrCat("derpkey", publicHex),
                                             notBeforeUnix, notAfterUnix, key.get());
  // Ed25519 signs the message itself, so no digest (NULL md).
  if (!x509 || !addBasicConstraintsNotCa(x509.get()) ||
      !X509_sign(x509.get(), key.get(), nullptr)) {
    return internalSslError("build meta-cert");
  }
  bssl::UniquePtr<CRYPTO_BUFFER> der = toBuffer(x509.get());
  if (!der) return internalSslError("encode meta-cert");
  return der;
}

absl::StatusOr<bssl::UniquePtr<CRYPTO_BUFFER>> makeFreshMetaCert(std::string_view serverPublicHex,
                                                                int64_t nowUnix) {
  constexpr int64_t kSlack = 30 * 24 * 3600;
  uint8_t seed[32];
  RAND_bytes(seed, sizeof(seed));
  auto meta = makeMetaCert(serverPublicHex, seed, nowUnix - kSlack, nowUnix + kSlack);
  OPENSSL_cleanse(seed, sizeof(seed));
  return meta;
}

}  // namespace derpd::tls
