// A typed client of the work server's JSON API (/api/v1), over HttpClient: used by the
// `idlegrid` console, the node daemon, the wizard, tests and benchmarks. Each call maps to
// one endpoint (docs/ARCHITECTURE.md, "server/: the API"); errors carry the server's
// message and a StatusCode from the HTTP status.
#ifndef IDLEGRID_SHARED_API_CLIENT_H_
#define IDLEGRID_SHARED_API_CLIENT_H_

#include <memory>
#include <optional>
#include <string>

#include "idlegrid/shared/envelope.h"
#include "idlegrid/shared/http_client.h"
#include "idlegrid/shared/json.h"
#include "idlegrid/shared/protocol.h"

namespace idlegrid {

struct Enrollment {
  std::string node_id;
  std::string secret;
  std::string key_id;
  std::string public_key_pem;  // the unit-signing key to pin
};

class ApiClient {
 public:
  // `options.bearer_token`: the admin token, or "node_id:secret" for a node.
  static StatusOr<std::unique_ptr<ApiClient>> Create(HttpClientOptions options);

  // --- anyone ---
  StatusOr<Json> Health();
  StatusOr<Enrollment> Enroll(const std::string& enroll_token, const NodeInfo& info);

  // --- nodes ---
  // The raw envelope JSON (verify it with VerifyUnit), or nullopt when no unit fits.
  StatusOr<std::optional<std::string>> Lease(const NodeInfo& info);
  StatusOr<HeartbeatReply> Beat(const Heartbeat& heartbeat);
  Status Complete(const Result& result);
  Status Abort(const std::string& lease_id, const std::string& reason, bool failed,
               const std::optional<BlobRef>& checkpoint);

  // --- blobs (nodes and admin) ---
  // Hashes the file, uploads it (skipped by nobody: the server re-hashes) and returns its ref.
  StatusOr<BlobRef> UploadFile(const std::string& path);
  StatusOr<BlobRef> UploadBytes(const std::string& bytes);
  Status DownloadBlob(const BlobRef& ref, const std::string& dest);

  // --- admin ---
  StatusOr<Json> Submit(const Job& job);  // the new job's status
  StatusOr<Json> JobStatus(const std::string& job_id);
  StatusOr<Json> Jobs();
  Status Cancel(const std::string& job_id);
  Status FetchOutput(const std::string& job_id, const std::string& name, const std::string& dest);
  StatusOr<Json> Nodes();
  Status RevokeNode(const std::string& node_id);
  StatusOr<Json> Stats();
  StatusOr<Json> Queue();
  StatusOr<std::string> NewEnrollToken(const std::string& label);

  HttpClient& http() { return *http_; }

 private:
  explicit ApiClient(std::unique_ptr<HttpClient> http) : http_(std::move(http)) {}
  StatusOr<Json> GetJson(const std::string& path);
  StatusOr<Json> PostJson(const std::string& path, const Json& body, bool idempotent);
  std::unique_ptr<HttpClient> http_;
};

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_API_CLIENT_H_
