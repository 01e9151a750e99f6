#include "idlegrid/shared/crypto.h"

#include <sys/stat.h>

#include <set>

#include <catch2/catch.hpp>

#include "idlegrid/shared/files.h"
#include "test_util.h"

namespace idlegrid {
namespace {

using testing::TempDir;

TEST_CASE("SHA-256 matches the FIPS 180-2 vectors", "[crypto]") {
  CHECK(Sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(Sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // One million 'a's, fed in uneven pieces through the streaming interface.
  Sha256 h;
  std::string chunk(7919, 'a');
  size_t left = 1000000;
  while (left > 0) {
    size_t n = std::min(left, chunk.size());
    h.Update(chunk.data(), n);
    left -= n;
  }
  CHECK(h.HexDigest() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("Sha256File streams a file larger than its buffer", "[crypto]") {
  TempDir dir;
  std::string data;
  for (int i = 0; i < 3 * (1 << 20) + 17; ++i) data.push_back(static_cast<char>(i * 31));
  testing::Spit(dir / "f", data);
  StatusOr<std::string> sha = Sha256File(dir / "f");
  REQUIRE(sha.ok());
  CHECK(*sha == Sha256Hex(data));
  CHECK(Sha256File(dir / "missing").status().code() == StatusCode::kNotFound);
}

TEST_CASE("hex encoding round-trips and rejects junk", "[crypto]") {
  std::string bytes("\x00\x01\xfe\xff", 4);
  CHECK(HexEncode(bytes) == "0001feff");
  CHECK(HexDecode("0001FEff").value() == bytes);
  CHECK_FALSE(HexDecode("abc").ok());
  CHECK_FALSE(HexDecode("zz").ok());
}

TEST_CASE("random tokens are hex, sized and distinct", "[crypto]") {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    std::string t = RandomToken(32);
    CHECK(t.size() == 64);
    CHECK(t.find_first_not_of("0123456789abcdef") == std::string::npos);
    seen.insert(t);
  }
  CHECK(seen.size() == 200);
}

TEST_CASE("ConstantTimeEquals compares contents and lengths", "[crypto]") {
  CHECK(ConstantTimeEquals("secret", "secret"));
  CHECK_FALSE(ConstantTimeEquals("secret", "secreT"));
  CHECK_FALSE(ConstantTimeEquals("secret", "secret2"));
  CHECK(ConstantTimeEquals("", ""));
}

TEST_CASE("Ed25519 sign and verify", "[crypto]") {
  StatusOr<PrivateKey> key = PrivateKey::Generate();
  REQUIRE(key.ok());
  PublicKey pub = key->public_key();
  StatusOr<std::string> sig = key->Sign("hello");
  REQUIRE(sig.ok());
  CHECK(sig->size() == 64);
  CHECK(pub.Verify("hello", *sig));
  CHECK_FALSE(pub.Verify("hellO", *sig));
  std::string flipped = *sig;
  flipped[10] ^= 1;
  CHECK_FALSE(pub.Verify("hello", flipped));
  CHECK_FALSE(pub.Verify("hello", sig->substr(0, 63)));
  PublicKey other = PrivateKey::Generate()->public_key();
  CHECK_FALSE(other.Verify("hello", *sig));
  CHECK(pub.KeyId().size() == 16);
  CHECK(pub.KeyId() != other.KeyId());
}

TEST_CASE("Ed25519 RFC 8032 test vector 1 verifies", "[crypto]") {
  StatusOr<std::string> raw =
      HexDecode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  StatusOr<std::string> sig = HexDecode(
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
      "1cf9b46bd25bf5f0595bbe24655141438e7a100b");
  REQUIRE(raw.ok());
  REQUIRE(sig.ok());
  StatusOr<PublicKey> pub = PublicKey::FromRaw(*raw);
  REQUIRE(pub.ok());
  CHECK(pub->Verify("", *sig));
  CHECK_FALSE(pub->Verify("x", *sig));
}

TEST_CASE("private keys save as 0600 PEM and load back", "[crypto]") {
  TempDir dir;
  StatusOr<PrivateKey> key = PrivateKey::Generate();
  REQUIRE(key.ok());
  std::string path = dir / "signing.pem";
  REQUIRE(key->SavePem(path).ok());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  StatusOr<PrivateKey> loaded = PrivateKey::LoadPem(path);
  REQUIRE(loaded.ok());
  CHECK(loaded->public_key().Raw() == key->public_key().Raw());
  StatusOr<std::string> sig = loaded->Sign("m");
  REQUIRE(sig.ok());
  CHECK(key->public_key().Verify("m", *sig));

  // A key others can read is refused, with the fix in the message.
  REQUIRE(::chmod(path.c_str(), 0644) == 0);
  StatusOr<PrivateKey> exposed = PrivateKey::LoadPem(path);
  CHECK(exposed.status().code() == StatusCode::kPermissionDenied);
  CHECK(exposed.status().message().find("chmod 600") != std::string::npos);

  // Public keys round-trip through PEM.
  std::string pub_pem = key->public_key().ToPem();
  StatusOr<PublicKey> pub = PublicKey::FromPem(pub_pem);
  REQUIRE(pub.ok());
  CHECK(pub->KeyId() == key->public_key().KeyId());
}

TEST_CASE("malformed and non-Ed25519 keys are refused", "[crypto]") {
  CHECK(PrivateKey::FromPem("not a key").status().code() == StatusCode::kInvalidArgument);
  CHECK(PublicKey::FromPem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .status()
            .code() == StatusCode::kInvalidArgument);
  CHECK_FALSE(PublicKey::FromRaw("short").ok());
  TempDir dir;
  std::string cert = dir / "c.pem", ec_key = dir / "k.pem";
  REQUIRE(GenerateSelfSignedCert(cert, ec_key, {"127.0.0.1"}).ok());
  StatusOr<PrivateKey> wrong_type = PrivateKey::LoadPem(ec_key);  // a P-256 key
  REQUIRE_FALSE(wrong_type.ok());
  CHECK(wrong_type.status().message().find("not Ed25519") != std::string::npos);
}

TEST_CASE("self-signed certificates carry the hosts and a stable fingerprint", "[crypto]") {
  TempDir dir;
  std::string cert = dir / "server.crt", key = dir / "server.key";
  REQUIRE(GenerateSelfSignedCert(cert, key, {"127.0.0.1", "localhost"}).ok());
  struct stat st {};
  REQUIRE(::stat(key.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::string pem = testing::Slurp(cert);
  StatusOr<std::string> fp = CertificateFingerprint(pem);
  REQUIRE(fp.ok());
  CHECK(fp->size() == 64);
  // The same fingerprint as the openssl command line computes (an independent tool).
  std::string out = testing::RunCommand("openssl x509 -noout -fingerprint -sha256 -in " + cert);
  std::string colon_hex = out.substr(out.find('=') + 1);
  colon_hex.erase(colon_hex.find_last_not_of("\n") + 1);
  CHECK(NormalizeFingerprint(colon_hex).value() == *fp);
  std::string text = testing::RunCommand("openssl x509 -noout -text -in " + cert);
  CHECK(text.find("IP Address:127.0.0.1") != std::string::npos);
  CHECK(text.find("DNS:localhost") != std::string::npos);
  CHECK_FALSE(CertificateFingerprint("garbage").ok());
  CHECK_FALSE(NormalizeFingerprint("abcd").ok());
  CHECK_FALSE(GenerateSelfSignedCert(cert, key, {}).ok());
}

}  // namespace
}  // namespace idlegrid
