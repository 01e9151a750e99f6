#include "idlegrid/shared/envelope.h"

namespace idlegrid {
namespace {

Json UnsignedJson(const SignedUnit& e) {
  return Json{{"schema", kSchemaVersion}, {"unit", e.unit.ToJson()},
              {"lease_id", e.lease_id},   {"node_id", e.node_id},
              {"issued_at", e.issued_at}, {"expires", e.expires},
              {"key_id", e.key_id}};
}

}  // namespace

Json SignedUnit::ToJson() const {
  Json j = UnsignedJson(*this);
  j["signature"] = signature;
  return j;
}

StatusOr<SignedUnit> SignedUnit::FromJson(const Json& j, const std::string& where) {
  JsonReader r(j, where);
  SignedUnit e;
  ReadSchema(r);
  e.lease_id = r.Id("lease_id");
  e.node_id = r.Id("node_id");
  e.issued_at = r.Int("issued_at", 0, int64_t{1} << 40);
  e.expires = r.Int("expires", 0, int64_t{1} << 40);
  e.key_id = r.String("key_id", 16);
  if (!IsLowerHex(e.key_id, 16)) r.Fail("key_id", "must be 16 hex digits");
  e.signature = r.String("signature", 128);
  if (!IsLowerHex(e.signature, 128)) r.Fail("signature", "must be 128 hex digits");
  const Json& unit = r.Object("unit");
  IDLEGRID_RETURN_IF_ERROR(r.Finish());
  IDLEGRID_ASSIGN_OR_RETURN(e.unit, WorkUnit::FromJson(unit, r.Path("unit")));
  return e;
}

StatusOr<std::string> EnvelopeSigningBytes(const SignedUnit& envelope) {
  IDLEGRID_ASSIGN_OR_RETURN(std::string canonical, CanonicalJson(UnsignedJson(envelope)));
  return std::string(kEnvelopeDomain) + canonical;
}

StatusOr<SignedUnit> SignUnit(const WorkUnit& unit, const std::string& lease_id,
                              const std::string& node_id, int64_t issued_at, int64_t expires,
                              const PrivateKey& key) {
  if (expires <= issued_at) return InvalidArgumentError("envelope must expire after issue");
  SignedUnit e;
  e.unit = unit;
  e.lease_id = lease_id;
  e.node_id = node_id;
  e.issued_at = issued_at;
  e.expires = expires;
  e.key_id = key.public_key().KeyId();
  IDLEGRID_ASSIGN_OR_RETURN(std::string bytes, EnvelopeSigningBytes(e));
  IDLEGRID_ASSIGN_OR_RETURN(std::string sig, key.Sign(bytes));
  e.signature = HexEncode(sig);
  // Round-trip through the strict parser so that we never sign what a node would refuse.
  IDLEGRID_RETURN_IF_ERROR(SignedUnit::FromJson(e.ToJson()).status());
  return e;
}

bool ReplayGuard::CheckAndRecord(const std::string& lease_id, int64_t expires, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = seen_.begin(); it != seen_.end();) {  // forget what can no longer verify
    it = it->second <= now ? seen_.erase(it) : std::next(it);
  }
  return seen_.emplace(lease_id, expires).second;
}

size_t ReplayGuard::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seen_.size();
}

StatusOr<SignedUnit> VerifyUnit(std::string_view envelope_json, const PublicKey& pinned,
                                const VerifyOptions& options) {
  IDLEGRID_ASSIGN_OR_RETURN(Json j, ParseJson(envelope_json));
  StatusOr<SignedUnit> parsed = SignedUnit::FromJson(j);
  if (!parsed.ok()) return parsed.status().WithContext("malformed unit envelope");
  SignedUnit e = std::move(*parsed);

  if (e.key_id != pinned.KeyId()) {
    return PermissionDeniedError("unit signed by unknown key " + e.key_id +
                                 " (this node trusts key " + pinned.KeyId() + ")");
  }
  // Verify against the bytes re-encoded from the parsed value: what is checked is exactly
  // what will be used, whatever whitespace or key order the sender chose.
  IDLEGRID_ASSIGN_OR_RETURN(std::string bytes, EnvelopeSigningBytes(e));
  IDLEGRID_ASSIGN_OR_RETURN(std::string sig, HexDecode(e.signature));
  if (!pinned.Verify(bytes, sig)) {
    return PermissionDeniedError("unit envelope signature does not verify (forged or altered)");
  }
  if (e.node_id != options.node_id) {
    return PermissionDeniedError("unit envelope is for node " + e.node_id + ", not " +
                                 options.node_id);
  }
  if (e.issued_at > options.now + kMaxClockSkewSeconds) {
    return FailedPreconditionError("unit envelope issued in the future (check the clocks)");
  }
  if (options.now >= e.expires) {
    return FailedPreconditionError("unit envelope expired " +
                                   std::to_string(options.now - e.expires) + " s ago");
  }
  if (e.expires - e.issued_at > kMaxEnvelopeLifetimeSeconds) {
    return FailedPreconditionError("unit envelope valid for too long");
  }
  if (options.replay != nullptr &&
      !options.replay->CheckAndRecord(e.lease_id, e.expires, options.now)) {
    return FailedPreconditionError("unit envelope for lease " + e.lease_id +
                                   " was already accepted (replay)");
  }
  return e;
}

}  // namespace idlegrid
