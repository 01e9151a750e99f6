// The work queue: jobs, their units, leases, nodes and tokens in one SQLite file, and every
// rule of a unit's life (docs/ARCHITECTURE.md, "server/"):
//
//   submit   -> the job is planned (server/src/planner.h, from a bounded sample of its
//               data) and split into units: chains of train_epochs units (each waits for the
//               previous one's checkpoint) or infer_slab units (Z range + halo)
//   prepare  -> each unit's data inputs are cut down to its region (a training crop, a
//               slab's slices) in the background, so a node downloads what its unit reads
//   lease    -> the oldest job's first ready unit that fits the node (memory, GPU, threads),
//               signed for this lease/node with the server's Ed25519 key
//   heartbeat-> extends the deadline, records the newest uploaded checkpoint and epochs done;
//               the reply says "abort" when the job was cancelled or the lease is gone
//   complete -> outputs recorded (idempotent for the same lease and outputs), the chain's
//               next unit becomes ready; a finished stage is assimilated in the background
//               (a chain's model, a sweep's ranking, stitched slabs) and the next stage
//               (infer with the best model) split
//   abort / expiry -> the unit goes back to the queue from its latest uploaded checkpoint;
//               failures (expiry, worker error) are bounded, then the job fails with the reason
//
// Every state change is one SQLite transaction (WAL): a crash at any point loses nothing that
// was acknowledged. Time comes from an injectable clock, so tests can expire leases without
// sleeping. Thread-safe (one connection behind a mutex; SQLite commits take microseconds).
#ifndef IDLEGRID_SERVER_QUEUE_H_
#define IDLEGRID_SERVER_QUEUE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "idlegrid/shared/blob_store.h"
#include "idlegrid/shared/crypto.h"
#include "idlegrid/shared/envelope.h"
#include "idlegrid/shared/json.h"
#include "idlegrid/shared/protocol.h"
#include "idlegrid/shared/status.h"

namespace idlegrid::server {

class Db;

struct QueueOptions {
  int64_t lease_seconds = 120;          // a lease's deadline, renewed by each heartbeat
  int64_t envelope_lifetime_s = 3600;   // how long a node may take to start a leased unit
  int max_failures = 3;                 // expiries + worker errors per unit, then the job fails
  int max_leases = 100;                 // leases per unit in all (graceful aborts included)
  int64_t unit_target_seconds = 300;    // training units are sized to last about this long
  int64_t slab_target_voxels = int64_t{32} << 20;  // inference slabs hold at most about this many
  int64_t min_slabs = 4;                // and a volume becomes at least this many (when halos allow)
  int64_t unit_threads = 2;             // CPU threads of a unit (part of its result on CPU)
  int64_t checkpoint_every_s = 60;
};

// The current time in Unix seconds.
using ClockFn = std::function<int64_t()>;
int64_t UnixNow();

struct NodeCredentials {
  std::string node_id;
  std::string secret;  // shown once; the server keeps only its SHA-256
  std::string bearer() const { return node_id + ":" + secret; }
};

enum class TokenKind { kAdmin, kEnroll };

class Queue {
 public:
  // Opens (creating or migrating) the database at db_path. Blobs live in `blobs`, units are
  // signed with `key`.
  static StatusOr<std::unique_ptr<Queue>> Open(const std::string& db_path, BlobStore* blobs,
                                               PrivateKey key, QueueOptions options = {},
                                               ClockFn clock = UnixNow);
  ~Queue();
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  // --- tokens and nodes -------------------------------------------------------------------
  // A new random token of this kind (stored hashed; the plain text is returned once).
  StatusOr<std::string> CreateToken(TokenKind kind, const std::string& label);
  // OK if `token` is a live token of this kind, else UNAUTHENTICATED.
  Status CheckToken(TokenKind kind, const std::string& token);
  Status RevokeToken(const std::string& token_prefix);
  StatusOr<NodeCredentials> Enroll(const std::string& enroll_token, const NodeInfo& info);
  // "node_id:secret" -> node_id, else UNAUTHENTICATED (also for revoked nodes).
  StatusOr<std::string> AuthenticateNode(const std::string& bearer);
  // Revokes a node; its active leases are requeued at once from their checkpoints.
  Status RevokeNode(const std::string& node_id);

  // --- jobs -------------------------------------------------------------------------------
  // Validates and splits a job; returns its id. Input blobs must already be stored.
  StatusOr<std::string> Submit(const Job& job);
  Status Cancel(const std::string& job_id);

  // --- node protocol ----------------------------------------------------------------------
  // The next unit for this node, or nullopt when none fits.
  StatusOr<std::optional<SignedUnit>> Lease(const std::string& node_id, const NodeInfo& info);
  StatusOr<HeartbeatReply> Beat(const std::string& node_id, const Heartbeat& heartbeat);
  Status Complete(const std::string& node_id, const Result& result);
  // A node gives a unit back: `failed` for a worker error (counts toward max_failures),
  // otherwise a graceful stop. `checkpoint`, when set, is where the next node resumes.
  Status Abort(const std::string& node_id, const std::string& lease_id, const std::string& reason,
               bool failed, const std::optional<BlobRef>& checkpoint);
  // Requeues units whose lease deadline passed; returns how many.
  StatusOr<int> ExpireLeases();
  // Background work, run by the server's background thread (and by tests, explicitly):
  // cuts the inputs of units waiting in 'preparing' (job by job, oldest first; a cut that
  // fails fails its job with the reason) ...
  Status PreparePending();
  // ... and assimilates every job whose current stage has finished (after a restart, too).
  Status AssimilatePending();
  // Called (on the caller's thread, without locks held) when background work appears: a
  // job with units to prepare, a finished stage. Set once, before any request. Without
  // one (a queue used on its own, as in tests), that work runs on the calling thread.
  void SetWakeup(std::function<void()> wake) { wake_ = std::move(wake); }
  // Makes a preparation in progress stop between chunks of its cut (the server is stopping):
  // its units stay 'preparing' and are cut again at the next start.
  void StopBackground() { stopping_ = true; }
  // Copies the write-ahead log into the database file from a second connection, so that
  // request threads never wait for it (the server's maintenance thread calls this).
  Status Checkpoint();
  // Records an uploaded blob (for statistics and garbage collection).
  Status RecordBlob(const BlobRef& blob);

  // --- views (JSON, as the API returns them) ------------------------------------------------
  StatusOr<Json> JobStatus(const std::string& job_id);
  StatusOr<Json> Jobs(int64_t limit = 100);
  StatusOr<Json> Nodes();
  StatusOr<Json> Stats();
  // "ok" or what PRAGMA integrity_check says.
  StatusOr<std::string> IntegrityCheck();

  const PublicKey& public_key() const { return public_key_; }
  const QueueOptions& options() const { return options_; }

 private:
  Queue(std::unique_ptr<Db> db, BlobStore* blobs, PrivateKey key, QueueOptions options,
        ClockFn clock);
  Status Migrate();
  struct Internal;
  friend struct Internal;

  std::mutex mu_;
  std::unique_ptr<Db> db_;  // guarded by mu_
  std::string db_path_;
  std::mutex checkpoint_mu_;
  std::unique_ptr<Db> checkpoint_db_;  // guarded by checkpoint_mu_
  BlobStore* blobs_;
  PrivateKey key_;
  PublicKey public_key_;
  QueueOptions options_;
  ClockFn clock_;
  std::mutex assimilate_mu_;  // one assimilation at a time (they are rare and may be long)
  std::mutex prepare_mu_;     // one preparation at a time
  std::function<void()> wake_;
  std::atomic<bool> stopping_{false};
  Status Wake();
  StatusOr<BlobRef> Cut(const BlobRef& source, const SliceRegion& region, bool deflate,
                        std::map<std::string, BlobRef>* done);
};

}  // namespace idlegrid::server

#endif  // IDLEGRID_SERVER_QUEUE_H_
