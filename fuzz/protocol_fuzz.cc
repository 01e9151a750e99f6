// Fuzz target: every JSON message parser a server or node runs on bytes from the network
// (unit envelopes, units, heartbeats, results, aborts, node reports, jobs). Beyond "no
// crash", it checks a property: whatever parses re-encodes to JSON that parses back to an
// equal value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "idlegrid/shared/envelope.h"
#include "idlegrid/shared/protocol.h"

namespace {

template <typename M>
void CheckMessage(const idlegrid::Json& j) {
  idlegrid::StatusOr<M> m = M::FromJson(j);
  if (!m.ok()) return;
  idlegrid::StatusOr<std::string> text = idlegrid::CanonicalJson(m->ToJson());
  if (!text.ok()) std::abort();
  idlegrid::StatusOr<M> again = idlegrid::ParseMessage<M>(*text);
  if (!again.ok() || !(*again == *m)) std::abort();
}

const idlegrid::PublicKey& Key() {
  static const idlegrid::PublicKey key = idlegrid::PrivateKey::Generate().value().public_key();
  return key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  idlegrid::StatusOr<idlegrid::Json> j = idlegrid::ParseJson(text);
  if (j.ok()) {
    CheckMessage<idlegrid::WorkUnit>(*j);
    CheckMessage<idlegrid::Heartbeat>(*j);
    CheckMessage<idlegrid::HeartbeatReply>(*j);
    CheckMessage<idlegrid::Result>(*j);
    CheckMessage<idlegrid::NodeInfo>(*j);
    CheckMessage<idlegrid::Job>(*j);
    CheckMessage<idlegrid::Lease>(*j);
    CheckMessage<idlegrid::AbortRequest>(*j);
    idlegrid::StatusOr<idlegrid::SignedUnit> e = idlegrid::SignedUnit::FromJson(*j);
    if (e.ok() && !idlegrid::SignedUnit::FromJson(e->ToJson()).ok()) std::abort();
  }
  idlegrid::VerifyOptions options;
  options.node_id = "node-1";
  options.now = 1790000000;
  // Without the private key nothing may verify.
  if (idlegrid::VerifyUnit(text, Key(), options).ok()) std::abort();
  return 0;
}
