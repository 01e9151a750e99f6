// HTTPS client on libcurl for nodes, the CLI and the wizard.
//
// Trust: either a pinned server certificate (SHA-256 fingerprint of its DER bytes, what a
// self-signed idlegrid server prints at first start), a CA file, or the system CAs.
// Transient failures (connection refused/reset, timeouts, HTTP 429/5xx) are retried with
// exponential backoff; other HTTP errors become a Status carrying the server's JSON
// {"error": "..."} message. Downloads resume with Range requests and are verified by size
// and SHA-256 before they appear at their destination; uploads stream from disk.
//
// Thread-safety: a client serialises its requests (one connection, kept alive); use one
// client per thread for parallel transfers.
#ifndef IDLEGRID_SHARED_HTTP_CLIENT_H_
#define IDLEGRID_SHARED_HTTP_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "idlegrid/shared/status.h"

namespace idlegrid {

struct HttpClientOptions {
  std::string base_url;            // e.g. "https://127.0.0.1:8443"; paths are appended
  std::string pinned_cert_sha256;  // trust exactly this server certificate ("AB:CD.." or hex)
  std::string ca_file;             // else trust certificates issued by these CAs
  std::string bearer_token;        // sent as "Authorization: Bearer ..." when set
  int64_t connect_timeout_ms = 10000;
  int64_t timeout_ms = 120000;     // a whole request (0: no limit); file uploads and downloads
                                   // are bounded by the stall limit instead
  int64_t low_speed_time_s = 60;   // abort a transfer slower than 1 byte/s for this long
  int max_attempts = 4;            // 1: no retries
  int64_t initial_backoff_ms = 250;
  int64_t max_backoff_ms = 15000;
  uint64_t max_response_bytes = 64ull << 20;  // in-memory bodies; downloads go to disk
  // When set and true, waits and retries stop early with CANCELLED.
  const std::atomic<bool>* cancel = nullptr;
  // Called (on the calling thread, often: throttle it) with bytes done and total (0 while
  // unknown) during file uploads and downloads.
  std::function<void(int64_t done, int64_t total)> on_progress;
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

class HttpClient {
 public:
  // Fails for a malformed fingerprint or a missing CA file.
  static StatusOr<std::unique_ptr<HttpClient>> Create(HttpClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  StatusOr<HttpResponse> Get(const std::string& path);
  // POST is retried only when the request cannot have reached the server (connect failed)
  // unless `idempotent` says repeating it is harmless.
  StatusOr<HttpResponse> PostJson(const std::string& path, const std::string& json,
                                  bool idempotent = false);
  StatusOr<HttpResponse> Delete(const std::string& path);

  // Downloads to `dest`. Bytes arrive in dest + ".part", which a later call (or a retry)
  // resumes from with a Range request; `dest` appears only once all bytes are there and
  // match expected_size / expected_sha256 (when given: -1 / "" skip the check). A mismatch
  // deletes the partial file and returns DATA_LOSS.
  Status Download(const std::string& path, const std::string& dest,
                  const std::string& expected_sha256 = "", int64_t expected_size = -1);

  // Sends a file as the request body without reading it into memory ("PUT" or "POST").
  StatusOr<HttpResponse> Upload(const std::string& method, const std::string& path,
                                const std::string& file,
                                const std::string& content_type = "application/octet-stream");

  // Number of HTTP requests sent so far, retries included (for tests and statistics).
  int64_t requests_sent() const { return requests_sent_.load(); }
  const HttpClientOptions& options() const { return options_; }

  struct Call;  // internal: one request in flight (defined in http_client.cc)

 private:
  explicit HttpClient(HttpClientOptions options);
  StatusOr<HttpResponse> Perform(Call& call);
  StatusOr<HttpResponse> PerformWithRetries(Call& call, bool retry_after_send);
  bool SleepBackoff(int attempt);

  HttpClientOptions options_;
  std::mutex mu_;
  void* curl_ = nullptr;  // CURL*; guarded by mu_
  std::atomic<int64_t> requests_sent_{0};
};

// Maps an HTTP error status to a StatusCode (401 -> UNAUTHENTICATED, 404 -> NOT_FOUND, ...).
StatusCode StatusCodeForHttp(long http_status);

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_HTTP_CLIENT_H_
