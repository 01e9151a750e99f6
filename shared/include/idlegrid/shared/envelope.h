// The signed unit envelope a server hands to a node with a lease:
//
//   {"schema":1, "unit":{...}, "lease_id", "node_id", "issued_at", "expires",
//    "key_id", "signature"}
//
// The Ed25519 signature (hex) covers kEnvelopeDomain followed by the canonical JSON of the
// envelope without "signature"; every other field, the whole unit included, is covered.
#ifndef IDLEGRID_SHARED_ENVELOPE_H_
#define IDLEGRID_SHARED_ENVELOPE_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "idlegrid/shared/crypto.h"
#include "idlegrid/shared/protocol.h"
#include "idlegrid/shared/status.h"

namespace idlegrid {

inline constexpr std::string_view kEnvelopeDomain = "idlegrid-unit-envelope-v1\n";
// Clocks of server and node may differ by this much.
inline constexpr int64_t kMaxClockSkewSeconds = 300;
// Longest validity a node accepts for an envelope.
inline constexpr int64_t kMaxEnvelopeLifetimeSeconds = 7 * 86400;

struct SignedUnit {
  WorkUnit unit;
  std::string lease_id;
  std::string node_id;
  int64_t issued_at = 0;
  int64_t expires = 0;
  std::string key_id;
  std::string signature;  // 128 hex digits

  Json ToJson() const;
  // Structural parse only: does NOT check the signature. Use VerifyUnit.
  static StatusOr<SignedUnit> FromJson(const Json& j, const std::string& where = "envelope");
};

// The exact bytes the signature covers.
StatusOr<std::string> EnvelopeSigningBytes(const SignedUnit& envelope);

// Signs `unit` for one lease. Fails if expires <= issued_at.
StatusOr<SignedUnit> SignUnit(const WorkUnit& unit, const std::string& lease_id,
                              const std::string& node_id, int64_t issued_at, int64_t expires,
                              const PrivateKey& key);

// Remembers the leases of accepted envelopes until they expire, so that the same envelope
// (or another one for the same lease) is not run twice. Thread-safe.
class ReplayGuard {
 public:
  // Records lease_id; false if it was recorded before and has not expired.
  bool CheckAndRecord(const std::string& lease_id, int64_t expires, int64_t now);
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, int64_t> seen_;  // lease_id -> expires; guarded by mu_
};

struct VerifyOptions {
  std::string node_id;               // the envelope must name this node
  int64_t now = 0;                   // current Unix time
  ReplayGuard* replay = nullptr;     // when set, a replayed lease is refused
};

// Parses and checks an envelope received from the network. Returns the unit only if all of
// these hold, else an error saying which failed:
//   well-formed (strict schema)                              INVALID_ARGUMENT
//   key_id names `pinned` and the signature verifies         PERMISSION_DENIED
//   addressed to options.node_id                             PERMISSION_DENIED
//   issued_at <= now + skew, now < expires, sane lifetime    FAILED_PRECONDITION
//   lease not seen before (when options.replay is set)       FAILED_PRECONDITION
StatusOr<SignedUnit> VerifyUnit(std::string_view envelope_json, const PublicKey& pinned,
                                const VerifyOptions& options);

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_ENVELOPE_H_
