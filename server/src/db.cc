#include "db.h"

#include <sqlite3.h>

namespace idlegrid::server {

namespace {
Status SqlError(sqlite3* db, const std::string& what) {
  const int code = sqlite3_extended_errcode(db);
  std::string msg = what + ": " + sqlite3_errmsg(db);
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) return UnavailableError(msg);
  if ((code & 0xff) == SQLITE_FULL) return ResourceExhaustedError(msg);
  if ((code & 0xff) == SQLITE_CORRUPT || (code & 0xff) == SQLITE_NOTADB) return DataLossError(msg);
  if ((code & 0xff) == SQLITE_CONSTRAINT) return FailedPreconditionError(msg);
  return IoError(msg);
}
}  // namespace

Stmt& Stmt::Bind(int i, int64_t v) {
  sqlite3_bind_int64(stmt_, i, v);
  return *this;
}
Stmt& Stmt::Bind(int i, double v) {
  sqlite3_bind_double(stmt_, i, v);
  return *this;
}
Stmt& Stmt::Bind(int i, const std::string& v) {
  sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::BindNull(int i) {
  sqlite3_bind_null(stmt_, i);
  return *this;
}

bool Stmt::Step() {
  if (!status_.ok()) return false;
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) {
    status_ = SqlError(sqlite3_db_handle(stmt_), sqlite3_sql(stmt_));
  }
  return false;
}

Status Stmt::Run() {
  while (Step()) {
  }
  return status_;
}

int64_t Stmt::Int(int col) const { return sqlite3_column_int64(stmt_, col); }
double Stmt::Real(int col) const { return sqlite3_column_double(stmt_, col); }
std::string Stmt::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  if (p == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col));
}
bool Stmt::IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

void Stmt::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  status_ = Status::Ok();
}

StatusOr<std::unique_ptr<Db>> Db::Open(const std::string& path) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    Status st = IoError("cannot open database " + path + ": " +
                        (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
    sqlite3_close(raw);
    return st;
  }
  std::unique_ptr<Db> db(new Db(raw, path));
  sqlite3_busy_timeout(raw, 5000);
  // Small pages: the queue's rows are small and every commit writes whole pages to the WAL
  // (takes effect only when the file is created).
  IDLEGRID_RETURN_IF_ERROR(db->Exec("PRAGMA page_size=1024"));
  IDLEGRID_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL"));
  IDLEGRID_RETURN_IF_ERROR(db->Exec("PRAGMA synchronous=NORMAL"));
  IDLEGRID_RETURN_IF_ERROR(db->Exec("PRAGMA foreign_keys=ON"));
  return db;
}

Db::~Db() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt->raw());
  sqlite3_close(db_);
}

Status Db::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    Status st = SqlError(db_, sql.substr(0, 80));
    sqlite3_free(err);
    return st;
  }
  return Status::Ok();
}

StatusOr<Stmt*> Db::Prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
      return SqlError(db_, "prepare " + sql.substr(0, 80));
    }
    it = cache_.emplace(sql, std::make_unique<Stmt>(raw)).first;
  }
  it->second->Reset();
  used_.push_back(it->second.get());
  return it->second.get();
}

void Db::ResetAll() {
  for (Stmt* s : used_) s->Reset();
  used_.clear();
}

StatusOr<int> Db::Checkpoint() {
  int log = 0, done = 0;
  const int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
  if (rc != SQLITE_OK && rc != SQLITE_BUSY) return SqlError(db_, "wal checkpoint");
  return log - done;
}

int64_t Db::Changes() const { return sqlite3_changes(db_); }

Txn::Txn(Db& db) : db_(db) { status_ = db_.Exec("BEGIN IMMEDIATE"); }

Txn::~Txn() {
  db_.ResetAll();
  if (status_.ok() && !done_) db_.Exec("ROLLBACK").IgnoreError();
}

Status Txn::Commit() {
  IDLEGRID_RETURN_IF_ERROR(status_);
  db_.ResetAll();
  Status st = db_.Exec("COMMIT");
  if (st.ok()) done_ = true;
  return st;
}

}  // namespace idlegrid::server
