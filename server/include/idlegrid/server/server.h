// idlegrid-server: the work queue behind HTTPS (JSON API under /api/v1, admin page at /).
//
// The data directory holds everything the server owns:
//   server.db            SQLite store (queue.h)
//   blobs/               content-addressed blobs (shared/blob_store.h)
//   tls/cert.pem, key.pem  the TLS certificate (self-signed at first start unless given)
//   signing.pem          the Ed25519 unit-signing key
//   admin.token, enroll.token  the tokens created at first start (0600)
// API reference: docs/ARCHITECTURE.md ("server/: the API").
#ifndef IDLEGRID_SERVER_SERVER_H_
#define IDLEGRID_SERVER_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "idlegrid/server/queue.h"
#include "idlegrid/shared/status.h"

namespace idlegrid::server {

struct ServerOptions {
  std::string data_dir;
  std::string host = "127.0.0.1";
  int port = 8443;                     // 0: any free port (see Server::port())
  std::string cert_file, key_file;     // the user's own certificate; empty: self-signed
  std::string public_name;             // host name in the self-signed certificate
  // Request threads. cpp-httplib gives each open connection a thread for as long as it is
  // kept alive, so this bounds the nodes served at once; idle connections close after
  // keep_alive_s so that a busy thread pool frees up.
  int threads = 32;
  int keep_alive_s = 2;
  int64_t max_json_bytes = 4 << 20;    // any JSON request body
  int64_t max_blob_bytes = int64_t{64} << 30;
  int64_t maintenance_interval_ms = 1000;  // lease expiry and assimilation sweep
  QueueOptions queue;
  ClockFn clock = UnixNow;
};

// What a first start created (empty strings on later starts).
struct FirstStart {
  bool created = false;
  std::string admin_token;
  std::string enroll_token;
};

class Server {
 public:
  // Opens or initialises the data directory. Does not listen yet.
  static StatusOr<std::unique_ptr<Server>> Create(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the port and serves on background threads.
  Status Start();
  // Stops accepting, finishes requests in flight, stops the maintenance thread.
  void Stop();
  // Blocks until Stop() (from another thread or a signal handler's thread).
  void Wait();

  int port() const;
  std::string url() const;                  // https://host:port
  const std::string& fingerprint() const;   // SHA-256 of the certificate (hex with colons)
  const FirstStart& first_start() const;
  Queue& queue();
  const std::string& data_dir() const;

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace idlegrid::server

#endif  // IDLEGRID_SERVER_SERVER_H_
