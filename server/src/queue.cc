#include "idlegrid/server/queue.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "db.h"
#include "idlegrid/models/config_json.h"
#include "idlegrid/models/strategy.h"
#include "idlegrid/shared/log.h"
#include "idlegrid/shared/tiff_io.h"
#include "assimilator.h"
#include "planner.h"
#include "splitter.h"

namespace idlegrid::server {

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

// Schema migrations, applied in order; PRAGMA user_version counts the applied ones.
const char* const kMigrations[] = {
    // 1: the first schema.
    R"sql(
CREATE TABLE tokens(
  hash TEXT PRIMARY KEY, kind TEXT NOT NULL, label TEXT NOT NULL, prefix TEXT NOT NULL,
  created_at INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE nodes(
  node_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, info TEXT NOT NULL,
  enrolled_at INTEGER NOT NULL, last_seen INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0, units_done INTEGER NOT NULL DEFAULT 0);
CREATE TABLE jobs(
  seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT UNIQUE NOT NULL, kind TEXT NOT NULL,
  name TEXT NOT NULL, state TEXT NOT NULL, stage INTEGER NOT NULL DEFAULT 0,
  submitted_at INTEGER NOT NULL, finished_at INTEGER, plan TEXT NOT NULL,
  outputs TEXT NOT NULL DEFAULT '{}', summary TEXT NOT NULL DEFAULT '{}',
  error TEXT NOT NULL DEFAULT '');
CREATE TABLE units(
  seq INTEGER PRIMARY KEY AUTOINCREMENT, unit_id TEXT UNIQUE NOT NULL,
  job_id TEXT NOT NULL REFERENCES jobs(job_id), job_seq INTEGER NOT NULL,
  stage INTEGER NOT NULL, chain TEXT NOT NULL, after TEXT, state TEXT NOT NULL,
  unit TEXT NOT NULL, mem_bytes INTEGER NOT NULL, needs_gpu INTEGER NOT NULL,
  threads INTEGER NOT NULL, epochs_done INTEGER NOT NULL DEFAULT 0,
  failures INTEGER NOT NULL DEFAULT 0, leases INTEGER NOT NULL DEFAULT 0,
  outputs TEXT, metrics TEXT, error TEXT NOT NULL DEFAULT '', updated_at INTEGER NOT NULL);
CREATE INDEX units_ready ON units(state, job_seq, seq);
CREATE INDEX units_job ON units(job_id, stage, state);
CREATE INDEX units_after ON units(after);
CREATE TABLE leases(
  lease_id TEXT PRIMARY KEY, unit_id TEXT NOT NULL REFERENCES units(unit_id),
  node_id TEXT NOT NULL REFERENCES nodes(node_id), issued_at INTEGER NOT NULL,
  deadline INTEGER NOT NULL, state TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0,
  epoch INTEGER NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '', ended_at INTEGER)
  WITHOUT ROWID;
-- Not on deadline: heartbeats then rewrite only the lease's own row.
CREATE INDEX leases_active ON leases(state);
CREATE INDEX leases_unit ON leases(unit_id);
CREATE TABLE blobs(sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE models(sha256 TEXT PRIMARY KEY, config TEXT NOT NULL, job_id TEXT NOT NULL);
CREATE TABLE events(
  id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, job_id TEXT, unit_id TEXT,
  node_id TEXT, kind TEXT NOT NULL, detail TEXT NOT NULL);
)sql",
    // 2: units wait in state 'preparing' while the inputs named in `prep` are cut down to the
    // unit's region; `cuts` remembers each cut, so a re-run of the same region reuses it.
    R"sql(
ALTER TABLE units ADD COLUMN prep TEXT;
CREATE TABLE cuts(
  source TEXT NOT NULL, region TEXT NOT NULL, deflate INTEGER NOT NULL,
  sha256 TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY(source, region, deflate))
  WITHOUT ROWID;
)sql",
};

std::string Dump(const Json& j) { return j.dump(); }

Json ParseStored(const std::string& text) {
  // Written by this server; a parse failure means the file was damaged.
  StatusOr<Json> j = ParseJson(text);
  return j.ok() ? *j : Json();
}

bool ValidId(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

}  // namespace

// Everything that runs with mu_ held and a transaction open.
struct Queue::Internal {
  Queue& q;
  Db& db;
  int64_t now;

  Status Event(const std::string& kind, const std::string& job, const std::string& unit,
               const std::string& node, const std::string& detail) {
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db.Prepare(
        "INSERT INTO events(at, job_id, unit_id, node_id, kind, detail) VALUES(?,?,?,?,?,?)"));
    auto opt = [](const std::string& v) { return v.empty() ? std::nullopt : std::optional(v); };
    return s->Bind(1, now).Bind(2, opt(job)).Bind(3, opt(unit)).Bind(4, opt(node)).Bind(5, kind)
        .Bind(6, detail).Run();
  }

  // A unit with inputs to cut waits in 'preparing' (PreparePending), else it is ready or
  // waits for the unit before it in its chain.
  Status InsertUnit(const PlannedUnit& p, int64_t job_seq, int stage) {
    const WorkUnit& u = p.unit;
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db.Prepare(
        "INSERT INTO units(unit_id, job_id, job_seq, stage, chain, after, state, unit, mem_bytes,"
        " needs_gpu, threads, epochs_done, updated_at, prep) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
    s->Bind(1, u.unit_id).Bind(2, u.job_id).Bind(3, job_seq).Bind(4, stage).Bind(5, p.chain);
    s->Bind(6, p.after.empty() ? std::nullopt : std::optional(p.after));
    s->Bind(7, !p.prep.empty() ? "preparing" : p.after.empty() ? "ready" : "waiting").Bind(8, Dump(u.ToJson()));
    s->Bind(9, u.min_memory_bytes).Bind(10, u.needs_gpu ? 1 : 0).Bind(11, u.threads);
    s->Bind(12, u.epochs ? u.epochs->begin : 0).Bind(13, now);
    s->Bind(14, p.prep.empty() ? std::nullopt : std::optional(Dump(Json(p.prep))));
    return s->Run();
  }

  // Where a lease stands: its unit and node and state; NOT_FOUND / PERMISSION_DENIED.
  struct LeaseRow {
    std::string unit_id, node_id, state;
    int64_t deadline = 0;
  };
  StatusOr<LeaseRow> GetLease(const std::string& lease_id, const std::string& node_id) {
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db.Prepare(
        "SELECT unit_id, node_id, state, deadline FROM leases WHERE lease_id=?"));
    s->Bind(1, lease_id);
    if (!s->Step()) {
      IDLEGRID_RETURN_IF_ERROR(s->status());
      return NotFoundError("no lease " + lease_id);
    }
    LeaseRow r{s->Text(0), s->Text(1), s->Text(2), s->Int(3)};
    if (r.node_id != node_id) return PermissionDeniedError("lease " + lease_id + " belongs to another node");
    return r;
  }

  // A complete retried (the node's request timed out after the server had recorded it):
  // OK when it reports the outputs recorded, FAILED_PRECONDITION otherwise.
  Status SameResult(const std::string& unit_id, const Result& result) {
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db.Prepare("SELECT outputs FROM units WHERE unit_id=? AND state='done'"));
    s->Bind(1, unit_id);
    if (!s->Step()) {
      IDLEGRID_RETURN_IF_ERROR(s->status());
      return FailedPreconditionError("the lease is completed, but its unit is not done");
    }
    const Json stored = ParseStored(s->Text(0));
    s->Reset();
    bool same = stored.is_object() && stored.size() == result.outputs.size();
    for (const auto& [name, ref] : result.outputs) {
      same = same && stored.contains(name) && stored[name].value("sha256", "") == ref.sha256 &&
             stored[name].value("size", int64_t{-1}) == ref.size;
    }
    if (!same) return FailedPreconditionError("the lease was completed with other outputs");
    return Status::Ok();
  }

  StatusOr<WorkUnit> LoadUnit(const std::string& unit_id) {
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db.Prepare("SELECT unit FROM units WHERE unit_id=?"));
    s->Bind(1, unit_id);
    if (!s->Step()) {
      IDLEGRID_RETURN_IF_ERROR(s->status());
      return NotFoundError("no unit " + unit_id);
    }
    StatusOr<Json> j = ParseJson(s->Text(0));
    if (!j.ok()) return DataLossError("unit " + unit_id + " is damaged in the database");
    return WorkUnit::FromJson(*j);
  }

  Status SaveUnitJson(const WorkUnit& u) {
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db.Prepare("UPDATE units SET unit=?, updated_at=? WHERE unit_id=?"));
    return s->Bind(1, Dump(u.ToJson())).Bind(2, now).Bind(3, u.unit_id).Run();
  }

  // A blob the node says it uploaded must be in the store with that size.
  Status CheckStored(const BlobRef& ref, const std::string& what) {
    StatusOr<BlobRef> st = q.blobs_->Stat(ref.sha256);
    if (!st.ok()) return FailedPreconditionError(what + " " + ref.sha256 + " was not uploaded");
    if (st->size != ref.size) {
      return FailedPreconditionError(what + " " + ref.sha256 + " has " + std::to_string(st->size) +
                                     " bytes, not " + std::to_string(ref.size));
    }
    return Status::Ok();
  }

  // Records a newer checkpoint for a unit (kept in the unit's inputs, where the next lease
  // will find it).
  Status RecordCheckpoint(const std::string& unit_id, const BlobRef& checkpoint, int64_t epoch) {
    IDLEGRID_RETURN_IF_ERROR(CheckStored(checkpoint, "checkpoint"));
    IDLEGRID_ASSIGN_OR_RETURN(WorkUnit u, LoadUnit(unit_id));
    if (u.kind != UnitKind::kTrainEpochs) return InvalidArgumentError("only training units have checkpoints");
    BlobRef ref = checkpoint;
    ref.url.clear();
    u.inputs["checkpoint"] = ref;
    IDLEGRID_RETURN_IF_ERROR(SaveUnitJson(u));
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db.Prepare(
        "UPDATE units SET epochs_done=MAX(epochs_done, ?) WHERE unit_id=?"));
    return s->Bind(1, epoch).Bind(2, unit_id).Run();
  }

  Status FailJob(const std::string& job_id, const std::string& reason) {
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db.Prepare(
        "UPDATE jobs SET state='failed', error=?, finished_at=? WHERE job_id=? AND state IN ('queued','running')"));
    IDLEGRID_RETURN_IF_ERROR(s->Bind(1, reason).Bind(2, now).Bind(3, job_id).Run());
    IDLEGRID_RETURN_IF_ERROR(EndJobUnits(job_id, "failed"));
    return Event("job_failed", job_id, "", "", reason);
  }

  // Units not done become `state`; their active leases are cancelled (heartbeats say abort).
  Status EndJobUnits(const std::string& job_id, const std::string& state) {
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * l, db.Prepare(
        "UPDATE leases SET state='cancelled', ended_at=? WHERE state='active' AND unit_id IN "
        "(SELECT unit_id FROM units WHERE job_id=?)"));
    IDLEGRID_RETURN_IF_ERROR(l->Bind(1, now).Bind(2, job_id).Run());
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * u, db.Prepare(
        "UPDATE units SET state=?, updated_at=? WHERE job_id=? AND state IN ('preparing','waiting','ready','leased')"));
    return u->Bind(1, state).Bind(2, now).Bind(3, job_id).Run();
  }

  // Puts a leased unit back in the queue (its inputs already name the latest checkpoint).
  // `failure` counts toward the unit's bound; past it the whole job fails.
  Status Requeue(const std::string& lease_id, const std::string& unit_id, const std::string& node_id,
                 const std::string& lease_state, bool failure, const std::string& reason) {
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * l, db.Prepare(
        "UPDATE leases SET state=?, ended_at=?, message=? WHERE lease_id=?"));
    IDLEGRID_RETURN_IF_ERROR(l->Bind(1, lease_state).Bind(2, now).Bind(3, reason).Bind(4, lease_id).Run());
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * u, db.Prepare(
        "UPDATE units SET state='ready', failures=failures+?, error=?, updated_at=? "
        "WHERE unit_id=? AND state='leased' RETURNING job_id, failures, leases, epochs_done"));
    u->Bind(1, failure ? 1 : 0).Bind(2, reason).Bind(3, now).Bind(4, unit_id);
    if (!u->Step()) return u->status();
    const std::string job_id = u->Text(0);
    const int64_t failures = u->Int(1), leases = u->Int(2), epochs_done = u->Int(3);
    u->Reset();
    IDLEGRID_RETURN_IF_ERROR(Event("requeued", job_id, unit_id, node_id,
                                   lease_state + ": " + reason + "; resumes at epoch " +
                                       std::to_string(epochs_done)));
    if (failures >= q.options_.max_failures) {
      return FailJob(job_id, "unit " + unit_id + " failed " + std::to_string(failures) +
                                 " times; last: " + reason);
    }
    if (leases >= q.options_.max_leases) {
      return FailJob(job_id, "unit " + unit_id + " was leased " + std::to_string(leases) +
                                 " times without finishing");
    }
    return Status::Ok();
  }

  StatusOr<int> Expire() {
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db.Prepare(
        "SELECT lease_id, unit_id, node_id FROM leases WHERE state='active' AND deadline<? LIMIT 1000"));
    s->Bind(1, now);
    std::vector<std::array<std::string, 3>> expired;
    while (s->Step()) expired.push_back({s->Text(0), s->Text(1), s->Text(2)});
    IDLEGRID_RETURN_IF_ERROR(s->status());
    for (const auto& e : expired) {
      IDLEGRID_RETURN_IF_ERROR(Requeue(e[0], e[1], e[2], "expired", true, "the node missed its deadline"));
    }
    return static_cast<int>(expired.size());
  }
};

Queue::Queue(std::unique_ptr<Db> db, BlobStore* blobs, PrivateKey key, QueueOptions options,
             ClockFn clock)
    : db_(std::move(db)),
      blobs_(blobs),
      key_(std::move(key)),
      public_key_(key_.public_key()),
      options_(options),
      clock_(std::move(clock)) {}

Queue::~Queue() = default;

StatusOr<std::unique_ptr<Queue>> Queue::Open(const std::string& db_path, BlobStore* blobs,
                                             PrivateKey key, QueueOptions options, ClockFn clock) {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<Db> db, Db::Open(db_path));
  // Checkpoints (with their fsync) would stall every request behind the connection's mutex;
  // Checkpoint() does them from another connection. This bound only matters without it.
  IDLEGRID_RETURN_IF_ERROR(db->Exec("PRAGMA wal_autocheckpoint=20000"));
  std::unique_ptr<Queue> q(new Queue(std::move(db), blobs, std::move(key), options, std::move(clock)));
  q->db_path_ = db_path;
  IDLEGRID_RETURN_IF_ERROR(q->Migrate());
  return q;
}

Status Queue::Migrate() {
  std::lock_guard<std::mutex> lock(mu_);
  StmtScope scope(*db_);
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare("PRAGMA user_version"));
  if (!s->Step()) return s->status();
  const int64_t version = s->Int(0);
  s->Reset();
  const int64_t latest = std::size(kMigrations);
  if (version > latest) {
    return FailedPreconditionError("the database has schema " + std::to_string(version) +
                                   ", newer than this server's " + std::to_string(latest));
  }
  for (int64_t v = version; v < latest; ++v) {
    Txn txn(*db_);
    IDLEGRID_RETURN_IF_ERROR(txn.status());
    IDLEGRID_RETURN_IF_ERROR(db_->Exec(kMigrations[v]));
    IDLEGRID_RETURN_IF_ERROR(db_->Exec("PRAGMA user_version=" + std::to_string(v + 1)));
    IDLEGRID_RETURN_IF_ERROR(txn.Commit());
  }
  return Status::Ok();
}

// --- tokens and nodes ---------------------------------------------------------------------

namespace {
const char* TokenKindName(TokenKind k) { return k == TokenKind::kAdmin ? "admin" : "enroll"; }
}  // namespace

StatusOr<std::string> Queue::CreateToken(TokenKind kind, const std::string& label) {
  const std::string token = RandomToken(24);
  std::lock_guard<std::mutex> lock(mu_);
  StmtScope scope(*db_);
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
      "INSERT INTO tokens(hash, kind, label, prefix, created_at) VALUES(?,?,?,?,?)"));
  IDLEGRID_RETURN_IF_ERROR(s->Bind(1, Sha256Hex(token)).Bind(2, TokenKindName(kind)).Bind(3, label)
                               .Bind(4, token.substr(0, 8)).Bind(5, clock_()).Run());
  return token;
}

Status Queue::CheckToken(TokenKind kind, const std::string& token) {
  std::lock_guard<std::mutex> lock(mu_);
  StmtScope scope(*db_);
  // The lookup is by hash, so timing reveals nothing about the stored tokens.
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
      "SELECT 1 FROM tokens WHERE hash=? AND kind=? AND revoked=0"));
  s->Bind(1, Sha256Hex(token)).Bind(2, TokenKindName(kind));
  if (s->Step()) return Status::Ok();
  IDLEGRID_RETURN_IF_ERROR(s->status());
  return UnauthenticatedError(std::string("not a valid ") + TokenKindName(kind) + " token");
}

Status Queue::RevokeToken(const std::string& prefix) {
  if (prefix.size() < 8) return InvalidArgumentError("give at least the first 8 characters of the token");
  std::lock_guard<std::mutex> lock(mu_);
  StmtScope scope(*db_);
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
      "UPDATE tokens SET revoked=1 WHERE prefix=? AND kind='enroll'"));
  IDLEGRID_RETURN_IF_ERROR(s->Bind(1, prefix.substr(0, 8)).Run());
  if (db_->Changes() == 0) return NotFoundError("no enrollment token starts with " + prefix.substr(0, 8));
  return Status::Ok();
}

StatusOr<NodeCredentials> Queue::Enroll(const std::string& enroll_token, const NodeInfo& info) {
  IDLEGRID_RETURN_IF_ERROR(CheckToken(TokenKind::kEnroll, enroll_token));
  NodeCredentials c{"n" + RandomToken(8), RandomToken(32)};
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(*db_);
  IDLEGRID_RETURN_IF_ERROR(txn.status());
  Internal in{*this, *db_, clock_()};
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
      "INSERT INTO nodes(node_id, secret_hash, info, enrolled_at, last_seen) VALUES(?,?,?,?,?)"));
  IDLEGRID_RETURN_IF_ERROR(s->Bind(1, c.node_id).Bind(2, Sha256Hex(c.secret)).Bind(3, Dump(info.ToJson()))
                               .Bind(4, in.now).Bind(5, in.now).Run());
  IDLEGRID_RETURN_IF_ERROR(in.Event("enrolled", "", "", c.node_id, info.hostname));
  IDLEGRID_RETURN_IF_ERROR(txn.Commit());
  return c;
}

StatusOr<std::string> Queue::AuthenticateNode(const std::string& bearer) {
  const size_t colon = bearer.find(':');
  if (colon == std::string::npos) return UnauthenticatedError("node credentials are node_id:secret");
  const std::string node_id = bearer.substr(0, colon), secret = bearer.substr(colon + 1);
  std::lock_guard<std::mutex> lock(mu_);
  StmtScope scope(*db_);
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare("SELECT secret_hash, revoked FROM nodes WHERE node_id=?"));
  s->Bind(1, node_id);
  if (!s->Step()) {
    IDLEGRID_RETURN_IF_ERROR(s->status());
    return UnauthenticatedError("unknown node " + node_id.substr(0, 64));
  }
  const bool ok = ConstantTimeEquals(s->Text(0), Sha256Hex(secret));
  const bool revoked = s->Int(1) != 0;
  s->Reset();
  if (!ok) return UnauthenticatedError("wrong secret for node " + node_id);
  if (revoked) return UnauthenticatedError("node " + node_id + " was revoked");
  return node_id;
}

Status Queue::RevokeNode(const std::string& node_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(*db_);
  IDLEGRID_RETURN_IF_ERROR(txn.status());
  Internal in{*this, *db_, clock_()};
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare("UPDATE nodes SET revoked=1 WHERE node_id=?"));
  IDLEGRID_RETURN_IF_ERROR(s->Bind(1, node_id).Run());
  if (db_->Changes() == 0) return NotFoundError("no node " + node_id);
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * l, db_->Prepare(
      "SELECT lease_id, unit_id FROM leases WHERE node_id=? AND state='active'"));
  l->Bind(1, node_id);
  std::vector<std::pair<std::string, std::string>> active;
  while (l->Step()) active.emplace_back(l->Text(0), l->Text(1));
  IDLEGRID_RETURN_IF_ERROR(l->status());
  for (const auto& [lease, unit] : active) {
    IDLEGRID_RETURN_IF_ERROR(in.Requeue(lease, unit, node_id, "revoked", false, "the node was revoked"));
  }
  IDLEGRID_RETURN_IF_ERROR(in.Event("node_revoked", "", "", node_id, ""));
  return txn.Commit();
}

// --- jobs ---------------------------------------------------------------------------------

StatusOr<std::string> Queue::Submit(const Job& job_in) {
  Job job = job_in;
  job.job_id = "j" + RandomToken(6);
  job.submitted_at = clock_();
  if (job.name.empty()) job.name = JobKindName(job.kind);
  for (const auto& [name, ref] : job.inputs) {
    StatusOr<BlobRef> st = blobs_->Stat(ref.sha256);
    if (!st.ok() || st->size != ref.size) {
      return FailedPreconditionError("input \"" + name + "\" (" + ref.sha256 + ") was not uploaded");
    }
  }
  // The configuration a model was trained with, when this server trained it.
  auto recorded_config = [&](const BlobRef& model, const std::string& what) -> StatusOr<Json> {
    std::lock_guard<std::mutex> lock(mu_);
    StmtScope scope(*db_);
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare("SELECT config FROM models WHERE sha256=?"));
    s->Bind(1, model.sha256);
    if (!s->Step()) {
      IDLEGRID_RETURN_IF_ERROR(s->status());
      return InvalidArgumentError(what + " was not trained on this server: give its configuration as config.model");
    }
    return ParseStored(s->Text(0));
  };
  // Planning reads a bounded sample of the data, outside the database lock.
  IDLEGRID_ASSIGN_OR_RETURN(JobPlan plan, Planner(blobs_, options_, recorded_config).Plan(job));
  for (const PlannedUnit& p : plan.units) {
    if (!ValidId(p.unit.unit_id)) return InternalError("unit id " + p.unit.unit_id + " is not valid");
  }
  bool prepare = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Txn txn(*db_);
    IDLEGRID_RETURN_IF_ERROR(txn.status());
    Internal in{*this, *db_, clock_()};
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
        "INSERT INTO jobs(job_id, kind, name, state, submitted_at, plan) VALUES(?,?,?,'queued',?,?) RETURNING seq"));
    s->Bind(1, job.job_id).Bind(2, JobKindName(job.kind)).Bind(3, job.name).Bind(4, in.now).Bind(5, Dump(plan.stored));
    if (!s->Step()) return s->status();
    const int64_t job_seq = s->Int(0);
    s->Reset();
    for (const PlannedUnit& p : plan.units) {
      IDLEGRID_RETURN_IF_ERROR(in.InsertUnit(p, job_seq, 0));
      prepare = prepare || !p.prep.empty();
    }
    IDLEGRID_RETURN_IF_ERROR(in.Event("submitted", job.job_id, "", "",
                                      std::to_string(plan.units.size()) + " units in stage 1 of " +
                                          std::to_string(plan.stored["stages"].size())));
    IDLEGRID_RETURN_IF_ERROR(txn.Commit());
  }
  if (prepare) IDLEGRID_RETURN_IF_ERROR(Wake());
  return job.job_id;
}

Status Queue::Cancel(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(*db_);
  IDLEGRID_RETURN_IF_ERROR(txn.status());
  Internal in{*this, *db_, clock_()};
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare("SELECT state FROM jobs WHERE job_id=?"));
  s->Bind(1, job_id);
  if (!s->Step()) {
    IDLEGRID_RETURN_IF_ERROR(s->status());
    return NotFoundError("no job " + job_id);
  }
  const std::string state = s->Text(0);
  s->Reset();
  if (state != "queued" && state != "running") {
    return FailedPreconditionError("job " + job_id + " is already " + state);
  }
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * u, db_->Prepare(
      "UPDATE jobs SET state='cancelled', finished_at=? WHERE job_id=?"));
  IDLEGRID_RETURN_IF_ERROR(u->Bind(1, in.now).Bind(2, job_id).Run());
  IDLEGRID_RETURN_IF_ERROR(in.EndJobUnits(job_id, "cancelled"));
  IDLEGRID_RETURN_IF_ERROR(in.Event("cancelled", job_id, "", "", ""));
  return txn.Commit();
}

// --- node protocol ------------------------------------------------------------------------

StatusOr<std::optional<SignedUnit>> Queue::Lease(const std::string& node_id, const NodeInfo& info) {
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(*db_);
  IDLEGRID_RETURN_IF_ERROR(txn.status());
  Internal in{*this, *db_, clock_()};
  IDLEGRID_RETURN_IF_ERROR(in.Expire().status());
  // Rows are rewritten only when something changed (most leases come in the same second).
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * n, db_->Prepare(
      "UPDATE nodes SET last_seen=?1, info=?2 WHERE node_id=?3 AND (last_seen<?1 OR info!=?2)"));
  IDLEGRID_RETURN_IF_ERROR(n->Bind(1, in.now).Bind(2, Dump(info.ToJson())).Bind(3, node_id).Run());
  // Memory: a GPU unit needs it on the GPU, a CPU unit in RAM.
  int64_t gpu_memory = 0;
  for (const GpuInfo& g : info.gpus) gpu_memory = std::max(gpu_memory, g.memory_bytes);
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
      "SELECT u.unit_id, u.unit, u.job_id FROM units u WHERE u.state='ready' AND u.threads<=? AND "
      "((u.needs_gpu=0 AND u.mem_bytes<=?) OR (u.needs_gpu=1 AND u.mem_bytes<=?)) "
      "ORDER BY u.job_seq, u.seq LIMIT 1"));
  s->Bind(1, std::max<int64_t>(info.cores, 1)).Bind(2, info.ram_bytes).Bind(3, gpu_memory);
  if (!s->Step()) {
    IDLEGRID_RETURN_IF_ERROR(s->status());
    IDLEGRID_RETURN_IF_ERROR(txn.Commit());  // the expiries and last_seen
    return std::optional<SignedUnit>();
  }
  const std::string unit_id = s->Text(0), job_id = s->Text(2);
  StatusOr<Json> unit_json = ParseJson(s->Text(1));
  s->Reset();
  if (!unit_json.ok()) return DataLossError("unit " + unit_id + " is damaged in the database");
  IDLEGRID_ASSIGN_OR_RETURN(WorkUnit unit, WorkUnit::FromJson(*unit_json));

  const std::string lease_id = "l" + RandomToken(12);
  const int64_t deadline = in.now + options_.lease_seconds;
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * l, db_->Prepare(
      "INSERT INTO leases(lease_id, unit_id, node_id, issued_at, deadline, state) VALUES(?,?,?,?,?,'active')"));
  IDLEGRID_RETURN_IF_ERROR(l->Bind(1, lease_id).Bind(2, unit_id).Bind(3, node_id).Bind(4, in.now).Bind(5, deadline).Run());
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * u, db_->Prepare(
      "UPDATE units SET state='leased', leases=leases+1, updated_at=? WHERE unit_id=?"));
  IDLEGRID_RETURN_IF_ERROR(u->Bind(1, in.now).Bind(2, unit_id).Run());
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * j, db_->Prepare(
      "UPDATE jobs SET state='running' WHERE job_id=? AND state='queued'"));
  IDLEGRID_RETURN_IF_ERROR(j->Bind(1, job_id).Run());
  IDLEGRID_ASSIGN_OR_RETURN(SignedUnit envelope,
                            SignUnit(unit, lease_id, node_id, in.now, in.now + options_.envelope_lifetime_s, key_));
  IDLEGRID_RETURN_IF_ERROR(txn.Commit());
  return std::optional<SignedUnit>(std::move(envelope));
}

StatusOr<HeartbeatReply> Queue::Beat(const std::string& node_id, const Heartbeat& hb) {
  if (hb.node_id != node_id) return PermissionDeniedError("the heartbeat names another node");
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(*db_);
  IDLEGRID_RETURN_IF_ERROR(txn.status());
  Internal in{*this, *db_, clock_()};
  IDLEGRID_ASSIGN_OR_RETURN(Internal::LeaseRow lease, in.GetLease(hb.lease_id, node_id));
  HeartbeatReply reply;
  if (lease.state != "active") {
    reply.action = HeartbeatAction::kAbort;
    reply.reason = lease.state == "cancelled" ? "the job was cancelled or failed"
                                              : "the lease is " + lease.state;
    reply.deadline = lease.deadline;
    return reply;  // nothing changed; the transaction rolls back
  }
  if (hb.checkpoint) {
    IDLEGRID_RETURN_IF_ERROR(in.RecordCheckpoint(lease.unit_id, *hb.checkpoint, hb.epoch));
  }
  reply.deadline = in.now + options_.lease_seconds;
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
      "UPDATE leases SET deadline=?, progress=?, epoch=?, message=? WHERE lease_id=?"));
  IDLEGRID_RETURN_IF_ERROR(s->Bind(1, reply.deadline).Bind(2, hb.progress).Bind(3, hb.epoch)
                               .Bind(4, hb.message).Bind(5, hb.lease_id).Run());
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * n, db_->Prepare("UPDATE nodes SET last_seen=?1 WHERE node_id=?2 AND last_seen<?1"));
  IDLEGRID_RETURN_IF_ERROR(n->Bind(1, in.now).Bind(2, node_id).Run());
  IDLEGRID_RETURN_IF_ERROR(txn.Commit());
  return reply;
}

Status Queue::Complete(const std::string& node_id, const Result& result) {
  if (result.node_id != node_id) return PermissionDeniedError("the result names another node");
  bool stage_finished = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Txn txn(*db_);
    IDLEGRID_RETURN_IF_ERROR(txn.status());
    Internal in{*this, *db_, clock_()};
    IDLEGRID_ASSIGN_OR_RETURN(Internal::LeaseRow lease, in.GetLease(result.lease_id, node_id));
    if (lease.unit_id != result.unit_id) return InvalidArgumentError("the lease is for unit " + lease.unit_id);
    if (lease.state == "completed") return in.SameResult(lease.unit_id, result);  // a retry
    if (lease.state != "active") return FailedPreconditionError("the lease is " + lease.state);
    IDLEGRID_ASSIGN_OR_RETURN(WorkUnit unit, in.LoadUnit(lease.unit_id));
    std::vector<std::string> needed;
    if (unit.kind == UnitKind::kTrainEpochs) {
      needed = {"checkpoint", "metrics"};
      IDLEGRID_ASSIGN_OR_RETURN(models::ModelConfig c, models::ConfigFromJson(unit.config["model"]));
      if (unit.epochs->end == c.epochs) needed.push_back("model");
    } else if (unit.kind == UnitKind::kReviewSlices) {
      needed = {"uncertainty", "review"};
    } else {
      const std::string output = unit.config.value("output", "labels");
      needed = {output == "denoised" ? "denoised" : "labels"};
      if (output == "probabilities") needed.push_back("probabilities");
    }
    for (const std::string& name : needed) {
      if (!result.outputs.count(name)) return InvalidArgumentError("the result lacks the output \"" + name + "\"");
    }
    for (const auto& [name, ref] : result.outputs) {
      IDLEGRID_RETURN_IF_ERROR(in.CheckStored(ref, "output \"" + name + "\""));
    }
    Json outputs = Json::object();
    for (const auto& [name, ref] : result.outputs) {
      BlobRef r = ref;
      r.url.clear();
      outputs[name] = r.ToJson();
    }
    Json metrics = Json::object();
    for (const auto& [k, v] : result.metrics) {
      if (std::isfinite(v)) metrics[k] = v;
    }
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * u, db_->Prepare(
        "UPDATE units SET state='done', outputs=?, metrics=?, epochs_done=?, error='', updated_at=? WHERE unit_id=?"));
    IDLEGRID_RETURN_IF_ERROR(u->Bind(1, Dump(outputs)).Bind(2, Dump(metrics))
                                 .Bind(3, unit.epochs ? unit.epochs->end : 0).Bind(4, in.now)
                                 .Bind(5, unit.unit_id).Run());
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * l, db_->Prepare(
        "UPDATE leases SET state='completed', progress=1, ended_at=? WHERE lease_id=?"));
    IDLEGRID_RETURN_IF_ERROR(l->Bind(1, in.now).Bind(2, result.lease_id).Run());
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * n, db_->Prepare(
        "UPDATE nodes SET units_done=units_done+1, last_seen=? WHERE node_id=?"));
    IDLEGRID_RETURN_IF_ERROR(n->Bind(1, in.now).Bind(2, node_id).Run());
    // The chain's next unit resumes from this one's checkpoint.
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * next, db_->Prepare(
        "SELECT unit_id FROM units WHERE after=? AND state='waiting'"));
    next->Bind(1, unit.unit_id);
    std::vector<std::string> successors;
    while (next->Step()) successors.push_back(next->Text(0));
    IDLEGRID_RETURN_IF_ERROR(next->status());
    for (const std::string& id : successors) {
      IDLEGRID_ASSIGN_OR_RETURN(WorkUnit succ, in.LoadUnit(id));
      BlobRef cp = result.outputs.at("checkpoint");
      cp.url.clear();
      succ.inputs["checkpoint"] = cp;
      IDLEGRID_RETURN_IF_ERROR(in.SaveUnitJson(succ));
      IDLEGRID_ASSIGN_OR_RETURN(Stmt * r, db_->Prepare("UPDATE units SET state='ready' WHERE unit_id=?"));
      IDLEGRID_RETURN_IF_ERROR(r->Bind(1, id).Run());
    }
    IDLEGRID_RETURN_IF_ERROR(in.Event("completed", unit.job_id, unit.unit_id, node_id,
                                      "in " + std::to_string(static_cast<int64_t>(result.elapsed_s)) + " s"));
    // Was this the stage's last open unit? (An index seek, not a scan of the done ones.)
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * open, db_->Prepare(
        "SELECT 1 FROM units WHERE job_id=? AND stage=(SELECT stage FROM units WHERE unit_id=?) AND "
        "state IN ('preparing','waiting','ready','leased') LIMIT 1"));
    open->Bind(1, unit.job_id).Bind(2, unit.unit_id);
    stage_finished = !open->Step();
    IDLEGRID_RETURN_IF_ERROR(open->status());
    IDLEGRID_RETURN_IF_ERROR(txn.Commit());
  }
  return stage_finished ? Wake() : Status::Ok();
}

Status Queue::Wake() {
  if (wake_) {
    wake_();
    return Status::Ok();
  }
  IDLEGRID_RETURN_IF_ERROR(PreparePending());
  IDLEGRID_RETURN_IF_ERROR(AssimilatePending());
  return PreparePending();  // the next stage's units
}

// --- preparation --------------------------------------------------------------------------

namespace {

struct PreparingUnit {
  std::string unit_id, after;
  WorkUnit unit;
  std::vector<std::string> prep;
};

}  // namespace

Status Queue::PreparePending() {
  std::lock_guard<std::mutex> one(prepare_mu_);
  for (int round = 0; round < 1000; ++round) {
    // 1. The oldest job with units to prepare, and those units.
    std::string job_id;
    std::vector<PreparingUnit> units;
    {
      std::lock_guard<std::mutex> lock(mu_);
      StmtScope scope(*db_);
      IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
          "SELECT job_id FROM units WHERE state='preparing' ORDER BY job_seq, seq LIMIT 1"));
      if (!s->Step()) return s->status();
      job_id = s->Text(0);
      s->Reset();
      IDLEGRID_ASSIGN_OR_RETURN(Stmt * u, db_->Prepare(
          "SELECT unit_id, COALESCE(after, ''), unit, COALESCE(prep, '[]') FROM units "
          "WHERE job_id=? AND state='preparing' ORDER BY seq"));
      u->Bind(1, job_id);
      while (u->Step()) {
        PreparingUnit p{u->Text(0), u->Text(1), {}, {}};
        StatusOr<Json> unit = ParseJson(u->Text(2));
        StatusOr<Json> prep = ParseJson(u->Text(3));
        StatusOr<WorkUnit> w = unit.ok() ? WorkUnit::FromJson(*unit) : StatusOr<WorkUnit>(unit.status());
        if (w.ok() && prep.ok() && prep->is_array()) {
          p.unit = std::move(*w);
          for (const Json& name : *prep) p.prep.push_back(name.is_string() ? name.get<std::string>() : "");
        }
        units.push_back(std::move(p));
      }
      IDLEGRID_RETURN_IF_ERROR(u->status());
    }
    // 2. The cuts, without holding the database (each at most once: chains share theirs).
    std::string failure;
    std::map<std::string, BlobRef> done;  // cut key -> blob
    for (PreparingUnit& p : units) {
      if (p.unit.unit_id.empty() || !p.unit.region) {
        failure = "unit " + p.unit_id + " is damaged in the database";
        break;
      }
      for (const std::string& name : p.prep) {
        if (!p.unit.inputs.count(name)) {
          failure = "unit " + p.unit_id + " has no input \"" + name + "\" to cut";
          break;
        }
        StatusOr<BlobRef> cut = Cut(p.unit.inputs.at(name), *p.unit.region, name == "labels", &done);
        if (cut.status().code() == StatusCode::kCancelled) return cut.status();  // stopping: redone at start
        if (!cut.ok()) {
          failure = "cannot cut input \"" + name + "\" of unit " + p.unit_id + ": " + cut.status().message();
          break;
        }
        p.unit.inputs[name] = *cut;
      }
      if (!failure.empty()) break;
    }
    // 3. Record them, unless the job ended meanwhile.
    std::lock_guard<std::mutex> lock(mu_);
    Txn txn(*db_);
    IDLEGRID_RETURN_IF_ERROR(txn.status());
    Internal in{*this, *db_, clock_()};
    if (!failure.empty()) {
      IDLEGRID_RETURN_IF_ERROR(in.FailJob(job_id, failure));
      IDLEGRID_RETURN_IF_ERROR(txn.Commit());
      continue;
    }
    for (const PreparingUnit& p : units) {
      IDLEGRID_ASSIGN_OR_RETURN(Stmt * u, db_->Prepare(
          "UPDATE units SET unit=?, prep=NULL, state=?, updated_at=? WHERE unit_id=? AND state='preparing'"));
      IDLEGRID_RETURN_IF_ERROR(u->Bind(1, Dump(p.unit.ToJson())).Bind(2, p.after.empty() ? "ready" : "waiting")
                                   .Bind(3, in.now).Bind(4, p.unit_id).Run());
    }
    IDLEGRID_RETURN_IF_ERROR(in.Event("prepared", job_id, "", "", std::to_string(done.size()) + " inputs cut"));
    IDLEGRID_RETURN_IF_ERROR(txn.Commit());
  }
  return Status::Ok();
}

// One cut: from the cache of earlier cuts when its blob is still stored, else made now.
StatusOr<BlobRef> Queue::Cut(const BlobRef& source, const SliceRegion& region, bool deflate,
                             std::map<std::string, BlobRef>* done) {
  const std::string region_key = Dump(SliceRegionToJson(region));
  const std::string key = source.sha256 + region_key + (deflate ? "z" : "");
  if (auto it = done->find(key); it != done->end()) return it->second;
  {
    std::lock_guard<std::mutex> lock(mu_);
    StmtScope scope(*db_);
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
        "SELECT sha256, size FROM cuts WHERE source=? AND region=? AND deflate=?"));
    s->Bind(1, source.sha256).Bind(2, region_key).Bind(3, deflate ? 1 : 0);
    if (s->Step()) {
      BlobRef ref;
      ref.sha256 = s->Text(0);
      ref.size = s->Int(1);
      s->Reset();
      StatusOr<BlobRef> st = blobs_->Stat(ref.sha256);
      if (st.ok() && st->size == ref.size) return (*done)[key] = ref;
    }
    IDLEGRID_RETURN_IF_ERROR(s->status());
  }
  IDLEGRID_ASSIGN_OR_RETURN(BlobRef ref, CutRegion(*blobs_, source, region, deflate, &stopping_));
  std::lock_guard<std::mutex> lock(mu_);
  StmtScope scope(*db_);
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
      "INSERT OR REPLACE INTO cuts(source, region, deflate, sha256, size) VALUES(?,?,?,?,?)"));
  IDLEGRID_RETURN_IF_ERROR(s->Bind(1, source.sha256).Bind(2, region_key).Bind(3, deflate ? 1 : 0)
                               .Bind(4, ref.sha256).Bind(5, ref.size).Run());
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * b, db_->Prepare(
      "INSERT OR IGNORE INTO blobs(sha256, size, created_at) VALUES(?,?,?)"));
  IDLEGRID_RETURN_IF_ERROR(b->Bind(1, ref.sha256).Bind(2, ref.size).Bind(3, clock_()).Run());
  return (*done)[key] = ref;
}

Status Queue::Abort(const std::string& node_id, const std::string& lease_id, const std::string& reason,
                    bool failed, const std::optional<BlobRef>& checkpoint) {
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(*db_);
  IDLEGRID_RETURN_IF_ERROR(txn.status());
  Internal in{*this, *db_, clock_()};
  IDLEGRID_ASSIGN_OR_RETURN(Internal::LeaseRow lease, in.GetLease(lease_id, node_id));
  if (lease.state != "active") return Status::Ok();  // already requeued or cancelled
  if (checkpoint) {
    // The checkpoint's epoch is not known here; the next worker reads it from the file.
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * e, db_->Prepare("SELECT epoch FROM leases WHERE lease_id=?"));
    e->Bind(1, lease_id);
    int64_t epoch = 0;
    if (e->Step()) epoch = e->Int(0);
    IDLEGRID_RETURN_IF_ERROR(e->status());
    e->Reset();
    IDLEGRID_RETURN_IF_ERROR(in.RecordCheckpoint(lease.unit_id, *checkpoint, epoch));
  }
  IDLEGRID_RETURN_IF_ERROR(in.Requeue(lease_id, lease.unit_id, node_id, "aborted", failed,
                                      reason.substr(0, 1000)));
  return txn.Commit();
}

StatusOr<int> Queue::ExpireLeases() {
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(*db_);
  IDLEGRID_RETURN_IF_ERROR(txn.status());
  Internal in{*this, *db_, clock_()};
  IDLEGRID_ASSIGN_OR_RETURN(int n, in.Expire());
  IDLEGRID_RETURN_IF_ERROR(txn.Commit());
  return n;
}

Status Queue::Checkpoint() {
  std::lock_guard<std::mutex> lock(checkpoint_mu_);
  if (!checkpoint_db_) {
    IDLEGRID_ASSIGN_OR_RETURN(checkpoint_db_, Db::Open(db_path_));
  }
  return checkpoint_db_->Checkpoint().status();
}

Status Queue::RecordBlob(const BlobRef& blob) {
  std::lock_guard<std::mutex> lock(mu_);
  StmtScope scope(*db_);
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
      "INSERT OR IGNORE INTO blobs(sha256, size, created_at) VALUES(?,?,?)"));
  return s->Bind(1, blob.sha256).Bind(2, blob.size).Bind(3, clock_()).Run();
}

namespace {
// What a stage does, in the user's words ("train the denoiser", "segment").
std::string StageName(const Json& stage) {
  const std::string type = stage.value("type", "");
  if (type == "train") {
    if (stage.value("role", "") == "denoiser") return "train the denoiser";
    const size_t chains = stage.contains("chains") && stage["chains"].is_array() ? stage["chains"].size() : 1;
    return chains > 1 ? "train " + std::to_string(chains) + " candidates" : "train";
  }
  if (type == "review") return "review";
  const std::string output = stage.value("output", "");
  return output == "denoised" ? "denoise" : output == "probabilities" ? "segment (probabilities)" : "segment";
}
}  // namespace

// --- assimilation -------------------------------------------------------------------------

Status Queue::AssimilatePending() {
  std::lock_guard<std::mutex> one(assimilate_mu_);
  for (int round = 0; round < 1000; ++round) {
    // 1. Find a running job whose current stage is complete, and read what it needs.
    std::string job_id;
    int64_t stage = 0, job_seq = 0;
    Json plan, job_outputs, job_summary;
    std::vector<FinishedUnit> finished;
    {
      std::lock_guard<std::mutex> lock(mu_);
      StmtScope scope(*db_);
      IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
          "SELECT j.job_id, j.stage, j.plan, j.outputs, j.seq, j.summary FROM jobs j WHERE j.state='running' AND NOT EXISTS "
          "(SELECT 1 FROM units u WHERE u.job_id=j.job_id AND u.stage=j.stage AND "
          " u.state IN ('preparing','waiting','ready','leased','failed','cancelled')) "
          "ORDER BY j.seq LIMIT 1"));
      if (!s->Step()) return s->status();
      job_id = s->Text(0);
      stage = s->Int(1);
      plan = ParseStored(s->Text(2));
      job_outputs = ParseStored(s->Text(3));
      job_seq = s->Int(4);
      job_summary = ParseStored(s->Text(5));
      s->Reset();
      IDLEGRID_ASSIGN_OR_RETURN(Stmt * u, db_->Prepare(
          "SELECT unit_id, chain, unit, outputs FROM units WHERE job_id=? AND stage=? ORDER BY seq"));
      u->Bind(1, job_id).Bind(2, stage);
      while (u->Step()) finished.push_back({u->Text(0), u->Text(1), ParseStored(u->Text(2)), ParseStored(u->Text(3))});
      IDLEGRID_RETURN_IF_ERROR(u->status());
    }
    // 2. The work itself, without holding the database.
    const StageOutcome outcome = Assimilator(blobs_, options_).Assimilate(job_id, stage, plan, job_outputs, job_summary, finished);
    const bool last_stage = stage + 1 >= static_cast<int64_t>(plan["stages"].size());
    // 3. Record it, unless the job changed meanwhile (cancelled).
    std::lock_guard<std::mutex> lock(mu_);
    Txn txn(*db_);
    IDLEGRID_RETURN_IF_ERROR(txn.status());
    Internal in{*this, *db_, clock_()};
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare("SELECT state, stage, summary FROM jobs WHERE job_id=?"));
    s->Bind(1, job_id);
    if (!s->Step()) return s->status();
    const bool unchanged = s->Text(0) == "running" && s->Int(1) == stage;
    Json all_summary = ParseStored(s->Text(2));
    s->Reset();
    if (!unchanged) continue;
    if (!outcome.failure.empty()) {
      IDLEGRID_RETURN_IF_ERROR(in.FailJob(job_id, outcome.failure));
      IDLEGRID_RETURN_IF_ERROR(txn.Commit());
      continue;
    }
    if (!all_summary.is_object()) all_summary = Json::object();
    for (auto it = outcome.summary.begin(); it != outcome.summary.end(); ++it) all_summary[it.key()] = it.value();
    for (const auto& [sha, config] : outcome.models) {
      IDLEGRID_ASSIGN_OR_RETURN(Stmt * m, db_->Prepare(
          "INSERT OR IGNORE INTO models(sha256, config, job_id) VALUES(?,?,?)"));
      IDLEGRID_RETURN_IF_ERROR(m->Bind(1, sha).Bind(2, config).Bind(3, job_id).Run());
    }
    if (!outcome.plan.is_null()) {  // a stage planned from an earlier stage's outputs
      IDLEGRID_ASSIGN_OR_RETURN(Stmt * p, db_->Prepare("UPDATE jobs SET plan=? WHERE job_id=?"));
      IDLEGRID_RETURN_IF_ERROR(p->Bind(1, Dump(outcome.plan)).Bind(2, job_id).Run());
    }
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * j, db_->Prepare(
        "UPDATE jobs SET stage=?, state=?, outputs=?, summary=?, finished_at=? WHERE job_id=?"));
    j->Bind(1, last_stage ? stage : stage + 1).Bind(2, last_stage ? "done" : "running");
    j->Bind(3, Dump(outcome.job_outputs)).Bind(4, Dump(all_summary));
    if (last_stage) j->Bind(5, in.now); else j->BindNull(5);
    IDLEGRID_RETURN_IF_ERROR(j->Bind(6, job_id).Run());
    for (const PlannedUnit& u : outcome.next_units) {
      IDLEGRID_RETURN_IF_ERROR(in.InsertUnit(u, job_seq, static_cast<int>(stage + 1)));
    }
    IDLEGRID_RETURN_IF_ERROR(in.Event(last_stage ? "job_done" : "stage_done", job_id, "", "",
                                      "stage " + std::to_string(stage + 1)));
    IDLEGRID_RETURN_IF_ERROR(txn.Commit());
  }
  return Status::Ok();
}

// --- views --------------------------------------------------------------------------------

StatusOr<Json> Queue::JobStatus(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  StmtScope scope(*db_);
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
      "SELECT kind, name, state, stage, submitted_at, finished_at, plan, outputs, summary, error "
      "FROM jobs WHERE job_id=?"));
  s->Bind(1, job_id);
  if (!s->Step()) {
    IDLEGRID_RETURN_IF_ERROR(s->status());
    return NotFoundError("no job " + job_id);
  }
  const Json plan = ParseStored(s->Text(6));
  const int64_t stage = s->Int(3);
  const int64_t stages = plan.contains("stages") ? static_cast<int64_t>(plan["stages"].size()) : 1;
  Json j{{"job_id", job_id}, {"kind", s->Text(0)}, {"name", s->Text(1)}, {"state", s->Text(2)},
         {"stage", stage + 1}, {"stages", stages}, {"submitted_at", s->Int(4)},
         {"finished_at", s->IsNull(5) ? Json(nullptr) : Json(s->Int(5))},
         {"outputs", ParseStored(s->Text(7))}, {"summary", ParseStored(s->Text(8))},
         {"error", s->Text(9)}};
  if (plan.contains("notes")) j["notes"] = plan["notes"];  // how ambiguous inputs were read
  if (plan.contains("job") && plan["job"].contains("inputs")) j["inputs"] = plan["job"]["inputs"];  // what it reads
  j["stage_names"] = Json::array();
  if (plan.contains("stages")) {
    for (const Json& st : plan["stages"]) j["stage_names"].push_back(StageName(st));
  }
  s->Reset();
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * u, db_->Prepare(
      "SELECT u.unit_id, u.stage, u.chain, u.state, u.unit, u.epochs_done, u.failures, u.leases, u.error, "
      "(SELECT node_id FROM leases l WHERE l.unit_id=u.unit_id ORDER BY (state='active') DESC, issued_at DESC LIMIT 1), "
      "(SELECT progress FROM leases l WHERE l.unit_id=u.unit_id AND l.state='active' LIMIT 1), u.metrics "
      "FROM units u WHERE u.job_id=? ORDER BY u.seq"));
  u->Bind(1, job_id);
  Json units = Json::array();
  double stage_sum = 0;
  int64_t stage_units = 0;
  while (u->Step()) {
    const Json unit = ParseStored(u->Text(4));
    const std::string state = u->Text(3);
    double fraction = state == "done" ? 1.0 : 0.0;
    Json e{{"unit_id", u->Text(0)}, {"stage", u->Int(1) + 1}, {"chain", u->Text(2)}, {"state", state},
           {"kind", unit.value("kind", "")}, {"failures", u->Int(6)}, {"leases", u->Int(7)},
           {"node", u->IsNull(9) ? Json(nullptr) : Json(u->Text(9))}, {"error", u->Text(8)}};
    if (unit.contains("epochs")) {
      const int64_t b = unit["epochs"]["begin"], en = unit["epochs"]["end"];
      e["epochs"] = {b, en};
      e["epochs_done"] = u->Int(5);
      if (state != "done" && en > b) fraction = std::clamp(double(u->Int(5) - b) / double(en - b), 0.0, 1.0);
    }
    if (unit.contains("slab")) e["slab"] = {unit["slab"]["z_begin"], unit["slab"]["z_end"]};
    if (unit.contains("region")) e["region"] = unit["region"];  // the slices its inputs hold
    if (!u->IsNull(11)) e["metrics"] = ParseStored(u->Text(11));  // what the node reported
    if (!u->IsNull(10)) fraction = std::max(fraction, u->Real(10));
    e["progress"] = fraction;
    if (u->Int(1) == stage) {
      stage_sum += fraction;
      ++stage_units;
    }
    units.push_back(e);
  }
  IDLEGRID_RETURN_IF_ERROR(u->status());
  double progress = (stage + (stage_units ? stage_sum / stage_units : 0.0)) / double(stages);
  if (j["state"] == "done") progress = 1.0;
  j["progress"] = progress;
  j["units"] = units;
  return j;
}

StatusOr<Json> Queue::Jobs(int64_t limit) {
  std::lock_guard<std::mutex> lock(mu_);
  StmtScope scope(*db_);
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
      "SELECT j.job_id, j.kind, j.name, j.state, j.submitted_at, j.error, "
      "(SELECT COUNT(*) FROM units u WHERE u.job_id=j.job_id), "
      "(SELECT COUNT(*) FROM units u WHERE u.job_id=j.job_id AND u.state='done'), "
      "(SELECT COUNT(*) FROM units u WHERE u.job_id=j.job_id AND u.state='leased') "
      "FROM jobs j ORDER BY j.seq DESC LIMIT ?"));
  s->Bind(1, limit);
  Json jobs = Json::array();
  while (s->Step()) {
    jobs.push_back({{"job_id", s->Text(0)}, {"kind", s->Text(1)}, {"name", s->Text(2)},
                    {"state", s->Text(3)}, {"submitted_at", s->Int(4)}, {"error", s->Text(5)},
                    {"units", s->Int(6)}, {"units_done", s->Int(7)}, {"units_running", s->Int(8)}});
  }
  IDLEGRID_RETURN_IF_ERROR(s->status());
  return jobs;
}

StatusOr<Json> Queue::Nodes() {
  std::lock_guard<std::mutex> lock(mu_);
  StmtScope scope(*db_);
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(
      "SELECT n.node_id, n.info, n.enrolled_at, n.last_seen, n.revoked, n.units_done, "
      "(SELECT GROUP_CONCAT(unit_id) FROM leases l WHERE l.node_id=n.node_id AND l.state='active') "
      "FROM nodes n ORDER BY n.enrolled_at, n.node_id"));
  Json nodes = Json::array();
  const int64_t now = clock_();
  while (s->Step()) {
    const int64_t last_seen = s->Int(3);
    nodes.push_back({{"node_id", s->Text(0)}, {"info", ParseStored(s->Text(1))},
                     {"enrolled_at", s->Int(2)}, {"last_seen", last_seen},
                     {"online", now - last_seen <= 2 * options_.lease_seconds},
                     {"revoked", s->Int(4) != 0}, {"units_done", s->Int(5)},
                     {"running", s->IsNull(6) ? Json(nullptr) : Json(s->Text(6))}});
  }
  IDLEGRID_RETURN_IF_ERROR(s->status());
  return nodes;
}

StatusOr<Json> Queue::Stats() {
  std::lock_guard<std::mutex> lock(mu_);
  StmtScope scope(*db_);
  Json stats{{"jobs", Json::object()}, {"units", Json::object()}};
  for (const char* table : {"jobs", "units"}) {
    IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare(std::string("SELECT state, COUNT(*) FROM ") + table + " GROUP BY state"));
    while (s->Step()) stats[table][s->Text(0)] = s->Int(1);
    IDLEGRID_RETURN_IF_ERROR(s->status());
  }
  const int64_t now = clock_();
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * n, db_->Prepare(
      "SELECT COUNT(*), SUM(last_seen>=? AND revoked=0), (SELECT COUNT(*) FROM leases WHERE state='active'), "
      "(SELECT COUNT(*) FROM leases), (SELECT COUNT(*) FROM blobs), (SELECT TOTAL(size) FROM blobs) FROM nodes"));
  n->Bind(1, now - 2 * options_.lease_seconds);
  if (n->Step()) {
    stats["nodes"] = n->Int(0);
    stats["nodes_online"] = n->Int(1);
    stats["leases_active"] = n->Int(2);
    stats["leases_total"] = n->Int(3);
    stats["blobs"] = n->Int(4);
    stats["blob_bytes"] = static_cast<int64_t>(n->Real(5));
  }
  IDLEGRID_RETURN_IF_ERROR(n->status());
  n->Reset();
  return stats;
}

StatusOr<std::string> Queue::IntegrityCheck() {
  std::lock_guard<std::mutex> lock(mu_);
  StmtScope scope(*db_);
  IDLEGRID_ASSIGN_OR_RETURN(Stmt * s, db_->Prepare("PRAGMA integrity_check"));
  std::string out;
  while (s->Step()) out += (out.empty() ? "" : "\n") + s->Text(0);
  IDLEGRID_RETURN_IF_ERROR(s->status());
  return out;
}

}  // namespace idlegrid::server
