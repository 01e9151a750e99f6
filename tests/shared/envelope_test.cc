#include "idlegrid/shared/envelope.h"

#include <catch2/catch.hpp>

#include "protocol_fixtures.h"

namespace idlegrid {
namespace {

constexpr int64_t kNow = 1790000000;

struct Fixture {
  PrivateKey key = PrivateKey::Generate().value();
  PublicKey pub = key.public_key();
  WorkUnit unit = testing::MakeTrainUnit();

  std::string Signed(int64_t issued = kNow, int64_t expires = kNow + 3600,
                     const std::string& node = "node-1", const std::string& lease = "lease-1") {
    StatusOr<SignedUnit> e = SignUnit(unit, lease, node, issued, expires, key);
    REQUIRE(e.ok());
    return CanonicalJson(e->ToJson()).value();
  }
  VerifyOptions Options(ReplayGuard* replay = nullptr) {
    VerifyOptions o;
    o.node_id = "node-1";
    o.now = kNow + 10;
    o.replay = replay;
    return o;
  }
};

TEST_CASE("a signed unit verifies and yields the same unit", "[envelope]") {
  Fixture f;
  StatusOr<SignedUnit> e = VerifyUnit(f.Signed(), f.pub, f.Options());
  REQUIRE(e.ok());
  CHECK(e->unit == f.unit);
  CHECK(e->lease_id == "lease-1");
  CHECK(e->key_id == f.pub.KeyId());
}

TEST_CASE("key order and whitespace do not matter, content does", "[envelope]") {
  Fixture f;
  Json j = ParseJson(f.Signed()).value();
  std::string pretty = j.dump(4);  // different bytes, same value
  CHECK(VerifyUnit(pretty, f.pub, f.Options()).ok());
}

TEST_CASE("altered fields are rejected", "[envelope]") {
  Fixture f;
  Json good = ParseJson(f.Signed()).value();
  auto verify_after = [&](auto edit) {
    Json j = good;
    edit(j);
    return VerifyUnit(j.dump(), f.pub, f.Options()).status();
  };
  // Every covered field, including ones deep inside the unit.
  std::vector<Status> results = {
      verify_after([](Json& j) { j["unit"]["threads"] = 3; }),
      verify_after([](Json& j) { j["unit"]["epochs"]["end"] = 9; }),
      verify_after([](Json& j) { j["unit"]["config"]["lr"] = 0.1; }),
      verify_after([](Json& j) { j["unit"]["inputs"]["image"]["sha256"] = std::string(64, '0'); }),
      verify_after([](Json& j) { j["lease_id"] = "lease-2"; }),
      verify_after([](Json& j) { j["expires"] = kNow + 7200; }),
      verify_after([](Json& j) { j["issued_at"] = kNow - 1; }),
  };
  for (const Status& st : results) {
    CHECK(st.code() == StatusCode::kPermissionDenied);
    CHECK(st.message().find("signature does not verify") != std::string::npos);
  }
}

TEST_CASE("a forged signature or another key is rejected", "[envelope]") {
  Fixture f;
  Json j = ParseJson(f.Signed()).value();
  std::string sig = j["signature"];
  sig[5] = sig[5] == 'a' ? 'b' : 'a';
  j["signature"] = sig;
  Status forged = VerifyUnit(j.dump(), f.pub, f.Options()).status();
  CHECK(forged.code() == StatusCode::kPermissionDenied);

  // Signed by an attacker's key: the key id does not match the pinned key.
  Fixture attacker;
  attacker.unit = f.unit;
  Status wrong_key = VerifyUnit(attacker.Signed(), f.pub, f.Options()).status();
  CHECK(wrong_key.code() == StatusCode::kPermissionDenied);
  CHECK(wrong_key.message().find("unknown key") != std::string::npos);

  // An attacker's signature with the key id of the real key still fails.
  Json spoofed = ParseJson(attacker.Signed()).value();
  spoofed["key_id"] = f.pub.KeyId();
  CHECK(VerifyUnit(spoofed.dump(), f.pub, f.Options()).status().code() ==
        StatusCode::kPermissionDenied);
}

TEST_CASE("expired, future and overlong envelopes are rejected", "[envelope]") {
  Fixture f;
  VerifyOptions late = f.Options();
  late.now = kNow + 3600;  // the expiry instant itself is too late
  Status expired = VerifyUnit(f.Signed(), f.pub, late).status();
  CHECK(expired.code() == StatusCode::kFailedPrecondition);
  CHECK(expired.message().find("expired") != std::string::npos);

  Status future = VerifyUnit(f.Signed(kNow + 3600, kNow + 7200), f.pub, f.Options()).status();
  CHECK(future.code() == StatusCode::kFailedPrecondition);
  CHECK(future.message().find("future") != std::string::npos);
  // Within the allowed clock skew it is fine.
  CHECK(VerifyUnit(f.Signed(kNow + 60, kNow + 600), f.pub, f.Options()).ok());

  Status overlong = VerifyUnit(f.Signed(kNow, kNow + 30 * 86400), f.pub, f.Options()).status();
  CHECK(overlong.code() == StatusCode::kFailedPrecondition);

  CHECK_FALSE(SignUnit(f.unit, "l", "node-1", kNow, kNow, f.key).ok());
}

TEST_CASE("an envelope for another node is rejected", "[envelope]") {
  Fixture f;
  Status st = VerifyUnit(f.Signed(kNow, kNow + 3600, "node-2"), f.pub, f.Options()).status();
  CHECK(st.code() == StatusCode::kPermissionDenied);
  CHECK(st.message().find("for node node-2") != std::string::npos);
}

TEST_CASE("a replayed envelope is rejected", "[envelope]") {
  Fixture f;
  ReplayGuard guard;
  std::string env = f.Signed();
  REQUIRE(VerifyUnit(env, f.pub, f.Options(&guard)).ok());
  Status replay = VerifyUnit(env, f.pub, f.Options(&guard)).status();
  CHECK(replay.code() == StatusCode::kFailedPrecondition);
  CHECK(replay.message().find("replay") != std::string::npos);
  // A different lease is new work.
  CHECK(VerifyUnit(f.Signed(kNow, kNow + 3600, "node-1", "lease-2"), f.pub, f.Options(&guard)).ok());
  // Entries are forgotten once they expire (and could no longer verify anyway).
  CHECK(guard.size() == 2);
  CHECK(guard.CheckAndRecord("lease-9", kNow + 10, kNow + 4000));
  CHECK(guard.size() == 1);
}

TEST_CASE("malformed envelopes are rejected before any crypto", "[envelope]") {
  Fixture f;
  CHECK(VerifyUnit("{", f.pub, f.Options()).status().code() == StatusCode::kInvalidArgument);
  Json j = ParseJson(f.Signed()).value();
  j["extra"] = true;
  Status extra = VerifyUnit(j.dump(), f.pub, f.Options()).status();
  CHECK(extra.code() == StatusCode::kInvalidArgument);
  CHECK(extra.message().find("envelope.extra: unknown field") != std::string::npos);
  j.erase("extra");
  j["unit"]["kind"] = "shell";
  CHECK(VerifyUnit(j.dump(), f.pub, f.Options()).status().code() == StatusCode::kInvalidArgument);
  j = ParseJson(f.Signed()).value();
  j["signature"] = "zz";
  CHECK(VerifyUnit(j.dump(), f.pub, f.Options()).status().code() == StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace idlegrid
