// Cryptography on OpenSSL 3 EVP: SHA-256, random tokens, constant-time comparison, Ed25519
// keys and signatures, and the self-signed TLS certificate a server makes on first start.
// Everything here is thread-safe (no shared mutable state) unless stated.
#ifndef IDLEGRID_SHARED_CRYPTO_H_
#define IDLEGRID_SHARED_CRYPTO_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "idlegrid/shared/status.h"

typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace idlegrid {

std::string HexEncode(std::string_view bytes);
// Decodes lowercase or uppercase hex; fails on odd length or other characters.
StatusOr<std::string> HexDecode(std::string_view hex);

// Streaming SHA-256. Not thread-safe (one object per stream).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  void Update(std::string_view data) { Update(data.data(), data.size()); }
  // Lowercase hex digest; the object must not be updated afterwards.
  std::string HexDigest();

 private:
  EVP_MD_CTX* ctx_;
};

std::string Sha256Hex(std::string_view data);
// Hashes a file in 1 MiB chunks (memory does not grow with the file).
StatusOr<std::string> Sha256File(const std::string& path);

// `bytes` random bytes from the OS CSPRNG, hex encoded (2*bytes characters).
std::string RandomToken(size_t bytes = 32);

// Equality whose running time does not depend on where a and b differ (only on their
// lengths). Use it for secrets: tokens, MACs.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// An Ed25519 public key: verifies unit envelopes.
class PublicKey {
 public:
  static StatusOr<PublicKey> FromPem(std::string_view pem);
  static StatusOr<PublicKey> FromRaw(std::string_view raw32);
  static StatusOr<PublicKey> LoadPem(const std::string& path);

  std::string ToPem() const;
  std::string Raw() const;  // 32 bytes
  // First 16 hex characters of SHA-256(raw key): names the key in envelopes.
  std::string KeyId() const;
  // True iff `signature` (64 bytes) is a valid signature of `message` by this key.
  bool Verify(std::string_view message, std::string_view signature) const;

 private:
  explicit PublicKey(std::shared_ptr<EVP_PKEY> key) : key_(std::move(key)) {}
  std::shared_ptr<EVP_PKEY> key_;
  friend class PrivateKey;
};

// An Ed25519 private key: the server's unit-signing key.
class PrivateKey {
 public:
  static StatusOr<PrivateKey> Generate();
  static StatusOr<PrivateKey> FromPem(std::string_view pem);
  // Loads a PKCS#8 PEM file; refuses a file readable by group or others.
  static StatusOr<PrivateKey> LoadPem(const std::string& path);
  // Writes PKCS#8 PEM atomically with mode 0600.
  Status SavePem(const std::string& path) const;

  std::string ToPem() const;
  PublicKey public_key() const;
  // 64-byte Ed25519 signature of `message`.
  StatusOr<std::string> Sign(std::string_view message) const;

 private:
  explicit PrivateKey(std::shared_ptr<EVP_PKEY> key) : key_(std::move(key)) {}
  std::shared_ptr<EVP_PKEY> key_;
};

// Writes a self-signed TLS certificate (ECDSA P-256, SHA-256, valid `days`) for `hosts`
// (DNS names or IP addresses, put in subjectAltName) to cert_path, and its private key
// (mode 0600) to key_path.
Status GenerateSelfSignedCert(const std::string& cert_path, const std::string& key_path,
                              const std::vector<std::string>& hosts, int days = 3650);

// SHA-256 of a PEM certificate's DER bytes, lowercase hex: what nodes pin.
StatusOr<std::string> CertificateFingerprint(const std::string& cert_pem);
// Accepts "AB:CD:..." or "abcd..." and returns 64 lowercase hex digits.
StatusOr<std::string> NormalizeFingerprint(std::string_view text);

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_CRYPTO_H_
