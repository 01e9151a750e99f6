// A thin RAII layer over SQLite for the server's store (internal to server/).
//
// One Db is one connection. Statements are prepared once and cached by their SQL text;
// Stmt binds by position (1-based) and steps. Errors become Status values naming the SQL.
#ifndef IDLEGRID_SERVER_SRC_DB_H_
#define IDLEGRID_SERVER_SRC_DB_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "idlegrid/shared/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace idlegrid::server {

class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, int v) { return Bind(i, static_cast<int64_t>(v)); }
  Stmt& Bind(int i, double v);
  Stmt& Bind(int i, const std::string& v);
  Stmt& Bind(int i, const char* v) { return Bind(i, std::string(v)); }
  Stmt& BindNull(int i);
  Stmt& Bind(int i, const std::optional<std::string>& v) { return v ? Bind(i, *v) : BindNull(i); }
  // True while a row is available; false when done. Errors go to status().
  bool Step();
  // Runs a statement that returns no rows.
  Status Run();
  int64_t Int(int col) const;
  double Real(int col) const;
  std::string Text(int col) const;
  bool IsNull(int col) const;
  const Status& status() const { return status_; }
  // Resets for the next use (done automatically by Db::Prepare).
  void Reset();
  sqlite3_stmt* raw() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_;
  Status status_;
};

class Db {
 public:
  // Opens or creates the file with WAL, foreign keys, synchronous=NORMAL (durable across a
  // crash of the process; power loss may drop the last transactions) and a busy timeout.
  static StatusOr<std::unique_ptr<Db>> Open(const std::string& path);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  Status Exec(const std::string& sql);
  // A PASSIVE WAL checkpoint: copies committed pages into the database file without
  // blocking writers on other connections. Returns the WAL frames still to copy.
  StatusOr<int> Checkpoint();
  // A cached prepared statement, reset and with its bindings cleared.
  StatusOr<Stmt*> Prepare(const std::string& sql);
  int64_t Changes() const;
  // Resets every statement handed out since the last call, so that no half-read SELECT keeps
  // a read transaction (and the WAL) open. Txn does this before it ends; read-only callers
  // use StmtScope.
  void ResetAll();
  const std::string& path() const { return path_; }

 private:
  Db(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
  std::map<std::string, std::unique_ptr<Stmt>> cache_;
  std::vector<Stmt*> used_;
};

class StmtScope {
 public:
  explicit StmtScope(Db& db) : db_(db) {}
  ~StmtScope() { db_.ResetAll(); }
  StmtScope(const StmtScope&) = delete;
  StmtScope& operator=(const StmtScope&) = delete;

 private:
  Db& db_;
};

// BEGIN IMMEDIATE on construction; ROLLBACK in the destructor unless Commit() succeeded.
class Txn {
 public:
  explicit Txn(Db& db);
  ~Txn();
  const Status& status() const { return status_; }
  Status Commit();

 private:
  Db& db_;
  Status status_;
  bool done_ = false;
};

}  // namespace idlegrid::server

#endif  // IDLEGRID_SERVER_SRC_DB_H_
