#include "idlegrid/shared/crypto.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "idlegrid/shared/files.h"

namespace idlegrid {
namespace {

constexpr uint64_t kMaxPemBytes = 64 * 1024;

// The oldest queued OpenSSL error as text (and clears the queue).
std::string OpenSslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

std::shared_ptr<EVP_PKEY> Own(EVP_PKEY* key) { return {key, EVP_PKEY_free}; }

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

// Hex ----------------------------------------------------------------------

std::string HexEncode(std::string_view bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

StatusOr<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return InvalidArgumentError("hex string has odd length");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]);
    int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return InvalidArgumentError("not a hex string");
    out[i] = static_cast<char>((hi << 4) | lo);
  }
  return out;
}

// SHA-256 ------------------------------------------------------------------

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  IDLEGRID_CHECK(ctx_ != nullptr);
  IDLEGRID_CHECK(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1);
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Update(const void* data, size_t size) {
  IDLEGRID_CHECK(EVP_DigestUpdate(ctx_, data, size) == 1);
}

std::string Sha256::HexDigest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  IDLEGRID_CHECK(EVP_DigestFinal_ex(ctx_, md, &len) == 1);
  return HexEncode(std::string_view(reinterpret_cast<char*>(md), len));
}

std::string Sha256Hex(std::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.HexDigest();
}

StatusOr<std::string> Sha256File(const std::string& path) {
  Sha256 h;
  IDLEGRID_RETURN_IF_ERROR(ForEachChunk(path, 1 << 20, [&](const char* data, size_t n) {
    h.Update(data, n);
    return Status::Ok();
  }));
  return h.HexDigest();
}

std::string RandomToken(size_t bytes) {
  std::string raw(bytes, '\0');
  IDLEGRID_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()),
                            static_cast<int>(raw.size())) == 1);
  return HexEncode(raw);
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// Ed25519 ------------------------------------------------------------------

StatusOr<PublicKey> PublicKey::FromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) return InvalidArgumentError("not a PEM public key: " + OpenSslError());
  if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(key);
    return InvalidArgumentError("public key is not Ed25519");
  }
  return PublicKey(Own(key));
}

StatusOr<PublicKey> PublicKey::FromRaw(std::string_view raw32) {
  if (raw32.size() != 32) return InvalidArgumentError("an Ed25519 public key is 32 bytes");
  EVP_PKEY* key = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw32.data()), 32);
  if (key == nullptr) return InvalidArgumentError("bad Ed25519 public key: " + OpenSslError());
  return PublicKey(Own(key));
}

StatusOr<PublicKey> PublicKey::LoadPem(const std::string& path) {
  IDLEGRID_ASSIGN_OR_RETURN(std::string pem, ReadFile(path, kMaxPemBytes));
  StatusOr<PublicKey> key = FromPem(pem);
  if (!key.ok()) return key.status().WithContext(path);
  return key;
}

std::string PublicKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  IDLEGRID_CHECK(PEM_write_bio_PUBKEY(bio.get(), key_.get()) == 1);
  return BioToString(bio.get());
}

std::string PublicKey::Raw() const {
  unsigned char raw[32];
  size_t len = sizeof(raw);
  IDLEGRID_CHECK(EVP_PKEY_get_raw_public_key(key_.get(), raw, &len) == 1 && len == 32);
  return std::string(reinterpret_cast<char*>(raw), len);
}

std::string PublicKey::KeyId() const { return Sha256Hex(Raw()).substr(0, 16); }

bool PublicKey::Verify(std::string_view message, std::string_view signature) const {
  if (signature.size() != 64) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return false;
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key_.get()) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                             signature.size(),
                             reinterpret_cast<const unsigned char*>(message.data()),
                             message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

StatusOr<PrivateKey> PrivateKey::Generate() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) return InternalError("Ed25519 key generation failed: " + OpenSslError());
  return PrivateKey(Own(key));
}

StatusOr<PrivateKey> PrivateKey::FromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) return InvalidArgumentError("not a PEM private key: " + OpenSslError());
  if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(key);
    return InvalidArgumentError("private key is not Ed25519");
  }
  return PrivateKey(Own(key));
}

StatusOr<PrivateKey> PrivateKey::LoadPem(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return NotFoundError("no such key file: " + path);
    return ErrnoError("cannot stat " + path, errno);
  }
  if ((st.st_mode & 077) != 0) {
    return PermissionDeniedError("private key " + path +
                                 " is readable by other users; run chmod 600 on it");
  }
  IDLEGRID_ASSIGN_OR_RETURN(std::string pem, ReadFile(path, kMaxPemBytes));
  StatusOr<PrivateKey> key = FromPem(pem);
  OPENSSL_cleanse(pem.data(), pem.size());
  if (!key.ok()) return key.status().WithContext(path);
  return key;
}

std::string PrivateKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  IDLEGRID_CHECK(PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr,
                                          nullptr) == 1);
  return BioToString(bio.get());
}

Status PrivateKey::SavePem(const std::string& path) const {
  std::string pem = ToPem();
  Status st = WriteFileAtomic(path, pem, 0600);
  OPENSSL_cleanse(pem.data(), pem.size());
  return st;
}

PublicKey PrivateKey::public_key() const {
  unsigned char raw[32];
  size_t len = sizeof(raw);
  IDLEGRID_CHECK(EVP_PKEY_get_raw_public_key(key_.get(), raw, &len) == 1);
  StatusOr<PublicKey> pub =
      PublicKey::FromRaw(std::string_view(reinterpret_cast<char*>(raw), len));
  IDLEGRID_CHECK(pub.ok());
  return *pub;
}

StatusOr<std::string> PrivateKey::Sign(std::string_view message) const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return InternalError("out of memory");
  std::string sig(64, '\0');
  size_t len = sig.size();
  bool ok = EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key_.get()) == 1 &&
            EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                           reinterpret_cast<const unsigned char*>(message.data()),
                           message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok || len != 64) return InternalError("Ed25519 signing failed: " + OpenSslError());
  return sig;
}

// TLS certificate ----------------------------------------------------------

Status GenerateSelfSignedCert(const std::string& cert_path, const std::string& key_path,
                              const std::vector<std::string>& hosts, int days) {
  if (hosts.empty()) return InvalidArgumentError("a certificate needs at least one host name");
  std::shared_ptr<EVP_PKEY> key = Own(EVP_EC_gen("P-256"));
  if (!key) return InternalError("EC key generation failed: " + OpenSslError());
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  if (!cert) return InternalError("out of memory");

  std::string serial = RandomToken(16);
  serial[0] = '1';  // positive, non-zero
  BIGNUM* bn = nullptr;
  BN_hex2bn(&bn, serial.c_str());
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_set_version(cert.get(), 2);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 86400);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(hosts[0].c_str()), -1, -1,
                             0);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("idlegrid"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);

  std::string san;
  for (const std::string& host : hosts) {
    unsigned char buf[16];
    bool is_ip = inet_pton(AF_INET, host.c_str(), buf) == 1 ||
                 inet_pton(AF_INET6, host.c_str(), buf) == 1;
    if (host.find_first_of(",\n") != std::string::npos) {
      return InvalidArgumentError("invalid host name: " + host);
    }
    san += (san.empty() ? "" : ",") + std::string(is_ip ? "IP:" : "DNS:") + host;
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  const std::pair<int, std::string> exts[] = {
      {NID_subject_alt_name, san},
      {NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
      {NID_key_usage, "critical,digitalSignature,keyCertSign"},
      {NID_ext_key_usage, "serverAuth"},
      {NID_subject_key_identifier, "hash"},
  };
  for (const auto& [nid, value] : exts) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (ext == nullptr) return InvalidArgumentError("bad certificate extension: " + value);
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return InternalError("certificate signing failed: " + OpenSslError());
  }

  BioPtr key_bio(BIO_new(BIO_s_mem()));
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr,
                               nullptr) != 1 ||
      PEM_write_bio_X509(cert_bio.get(), cert.get()) != 1) {
    return InternalError("cannot encode certificate: " + OpenSslError());
  }
  std::string key_pem = BioToString(key_bio.get());
  Status st = WriteFileAtomic(key_path, key_pem, 0600);
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  IDLEGRID_RETURN_IF_ERROR(st);
  return WriteFileAtomic(cert_path, BioToString(cert_bio.get()), 0644);
}

StatusOr<std::string> CertificateFingerprint(const std::string& cert_pem) {
  BioPtr bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
  if (!cert) return InvalidArgumentError("not a PEM certificate: " + OpenSslError());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert.get(), EVP_sha256(), md, &len) != 1) {
    return InternalError("cannot hash certificate: " + OpenSslError());
  }
  return HexEncode(std::string_view(reinterpret_cast<char*>(md), len));
}

StatusOr<std::string> NormalizeFingerprint(std::string_view text) {
  std::string hex;
  for (char c : text) {
    if (c == ':') continue;
    hex.push_back(static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c));
  }
  bool ok = hex.size() == 64;
  for (char c : hex) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  if (!ok) {
    return InvalidArgumentError(
        "a certificate fingerprint is a SHA-256 digest: 64 hex digits, colons allowed");
  }
  return hex;
}

}  // namespace idlegrid
