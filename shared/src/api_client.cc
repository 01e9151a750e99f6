#include "idlegrid/shared/api_client.h"

#include <unistd.h>

#include <cstdio>

#include "idlegrid/shared/crypto.h"
#include "idlegrid/shared/files.h"

namespace idlegrid {

StatusOr<std::unique_ptr<ApiClient>> ApiClient::Create(HttpClientOptions options) {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> http, HttpClient::Create(std::move(options)));
  return std::unique_ptr<ApiClient>(new ApiClient(std::move(http)));
}

StatusOr<Json> ApiClient::GetJson(const std::string& path) {
  IDLEGRID_ASSIGN_OR_RETURN(HttpResponse r, http_->Get(path));
  StatusOr<Json> j = ParseJson(r.body);
  if (!j.ok()) return DataLossError("GET " + path + ": the server sent malformed JSON");
  return j;
}

StatusOr<Json> ApiClient::PostJson(const std::string& path, const Json& body, bool idempotent) {
  IDLEGRID_ASSIGN_OR_RETURN(HttpResponse r, http_->PostJson(path, body.dump(), idempotent));
  if (r.status == 204 || r.body.empty()) return Json();
  StatusOr<Json> j = ParseJson(r.body);
  if (!j.ok()) return DataLossError("POST " + path + ": the server sent malformed JSON");
  return j;
}

StatusOr<Json> ApiClient::Health() { return GetJson("/api/v1/health"); }

StatusOr<Enrollment> ApiClient::Enroll(const std::string& enroll_token, const NodeInfo& info) {
  IDLEGRID_ASSIGN_OR_RETURN(Json j, PostJson("/api/v1/enroll", {{"token", enroll_token}, {"node", info.ToJson()}}, false));
  JsonReader r(j, "enrollment");
  Enrollment e;
  e.node_id = r.Id("node_id");
  e.secret = r.String("secret", 256);
  e.key_id = r.String("key_id", 64);
  e.public_key_pem = r.String("public_key", 4096);
  IDLEGRID_RETURN_IF_ERROR(r.Finish());
  return e;
}

StatusOr<std::optional<std::string>> ApiClient::Lease(const NodeInfo& info) {
  // Not idempotent: a repeated lease request could hold a second unit until it expires.
  IDLEGRID_ASSIGN_OR_RETURN(HttpResponse r, http_->PostJson("/api/v1/lease", Json{{"node", info.ToJson()}}.dump(), false));
  if (r.status == 204) return std::optional<std::string>();
  return std::optional<std::string>(r.body);
}

StatusOr<HeartbeatReply> ApiClient::Beat(const Heartbeat& hb) {
  IDLEGRID_ASSIGN_OR_RETURN(Json j, PostJson("/api/v1/leases/" + hb.lease_id + "/heartbeat", hb.ToJson(), true));
  return HeartbeatReply::FromJson(j);
}

Status ApiClient::Complete(const Result& result) {
  return PostJson("/api/v1/leases/" + result.lease_id + "/complete", result.ToJson(), true).status();
}

Status ApiClient::Abort(const std::string& lease_id, const std::string& reason, bool failed,
                        const std::optional<BlobRef>& checkpoint) {
  const AbortRequest body{reason, failed, checkpoint};
  return PostJson("/api/v1/leases/" + lease_id + "/abort", body.ToJson(), true).status();
}

StatusOr<BlobRef> ApiClient::UploadFile(const std::string& path) {
  IDLEGRID_ASSIGN_OR_RETURN(std::string sha, Sha256File(path));
  IDLEGRID_ASSIGN_OR_RETURN(HttpResponse r, http_->Upload("PUT", "/api/v1/blobs/" + sha, path));
  StatusOr<Json> j = ParseJson(r.body);
  if (!j.ok()) return DataLossError("upload: the server sent malformed JSON");
  IDLEGRID_ASSIGN_OR_RETURN(BlobRef ref, BlobRef::FromJson(*j));
  if (ref.sha256 != sha) return DataLossError("the server stored " + ref.sha256 + " for " + sha);
  return ref;
}

StatusOr<BlobRef> ApiClient::UploadBytes(const std::string& bytes) {
  char tmpl[] = "/tmp/idlegrid-upload.XXXXXX";
  const int fd = ::mkstemp(tmpl);
  if (fd < 0) return ErrnoError("mkstemp", errno);
  ::close(fd);
  const std::string path = tmpl;
  Status w = WriteFileAtomic(path, bytes, 0600);
  StatusOr<BlobRef> ref = w.ok() ? UploadFile(path) : StatusOr<BlobRef>(w);
  std::remove(path.c_str());
  return ref;
}

Status ApiClient::DownloadBlob(const BlobRef& ref, const std::string& dest) {
  return http_->Download("/api/v1/blobs/" + ref.sha256, dest, ref.sha256, ref.size);
}

StatusOr<Json> ApiClient::Submit(const Job& job) { return PostJson("/api/v1/jobs", job.ToJson(), false); }
StatusOr<Json> ApiClient::JobStatus(const std::string& id) { return GetJson("/api/v1/jobs/" + id); }
StatusOr<Json> ApiClient::Jobs() { return GetJson("/api/v1/jobs"); }
Status ApiClient::Cancel(const std::string& id) { return PostJson("/api/v1/jobs/" + id + "/cancel", Json::object(), true).status(); }

Status ApiClient::FetchOutput(const std::string& job_id, const std::string& name, const std::string& dest) {
  IDLEGRID_ASSIGN_OR_RETURN(Json status, JobStatus(job_id));
  if (!status.contains("outputs") || !status["outputs"].contains(name)) {
    return NotFoundError("job " + job_id + " has no output \"" + name + "\" (state: " +
                         status.value("state", "?") + ")");
  }
  IDLEGRID_ASSIGN_OR_RETURN(BlobRef ref, BlobRef::FromJson(status["outputs"][name]));
  return http_->Download("/api/v1/jobs/" + job_id + "/outputs/" + name, dest, ref.sha256, ref.size);
}

StatusOr<Json> ApiClient::Nodes() { return GetJson("/api/v1/nodes"); }
Status ApiClient::RevokeNode(const std::string& id) { return PostJson("/api/v1/nodes/" + id + "/revoke", Json::object(), true).status(); }
StatusOr<Json> ApiClient::Stats() { return GetJson("/api/v1/stats"); }
StatusOr<Json> ApiClient::Queue() { return GetJson("/api/v1/queue"); }

StatusOr<std::string> ApiClient::NewEnrollToken(const std::string& label) {
  IDLEGRID_ASSIGN_OR_RETURN(Json j, PostJson("/api/v1/tokens", {{"label", label}}, false));
  if (!j.is_object() || !j.contains("token") || !j["token"].is_string()) return DataLossError("no token in the reply");
  return j["token"].get<std::string>();
}

}  // namespace idlegrid
