#include "idlegrid/server/server.h"

#include <httplib.h>
#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <thread>

#include "admin_page.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/log.h"

namespace idlegrid::server {

namespace {

int HttpStatusFor(const Status& st) {
  switch (st.code()) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kUnauthenticated: return 401;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition: return 409;
    case StatusCode::kOutOfRange: return 416;
    case StatusCode::kResourceExhausted: return 413;
    case StatusCode::kDataLoss: return 422;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kUnimplemented: return 501;
    default: return 500;
  }
}

void SendJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void SendError(httplib::Response& res, const Status& st) {
  SendJson(res, HttpStatusFor(st), Json{{"error", st.message()}, {"code", StatusCodeName(st.code())}});
}

std::string Bearer(const httplib::Request& req) {
  const std::string h = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (h.size() <= prefix.size() || h.compare(0, prefix.size(), prefix) != 0) return "";
  return h.substr(prefix.size());
}

// Reads a request body of at most `cap` bytes (RESOURCE_EXHAUSTED beyond).
StatusOr<std::string> ReadBody(const httplib::ContentReader& reader, int64_t cap) {
  std::string body;
  bool too_big = false;
  int64_t seen = 0;
  // Past the cap the bytes are read and dropped (up to a bound), so that the client, still
  // sending, gets to read the 413 instead of a reset connection.
  const int64_t drain = 16 * cap + (int64_t{1} << 20);
  reader([&](const char* data, size_t len) {
    seen += static_cast<int64_t>(len);
    if (seen > cap) {
      too_big = true;
      body.clear();
      return seen <= drain;
    }
    body.append(data, len);
    return true;
  });
  if (too_big) return ResourceExhaustedError("the request body exceeds " + std::to_string(cap) + " bytes");
  return body;
}

// Top-level messages carry "schema"; curl users may leave it out of a nested one.
Json WithSchema(Json j) {
  if (j.is_object() && !j.contains("schema")) j["schema"] = kSchemaVersion;
  return j;
}

bool IsHex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  FirstStart first;
  std::string fingerprint;
  std::unique_ptr<BlobStore> blobs;
  std::unique_ptr<Queue> queue;
  std::unique_ptr<httplib::SSLServer> http;
  int port = 0;
  std::thread listener, maintenance, background;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;  // guarded by mu
  bool work = true;       // guarded by mu: background work may be pending (true at start:
                          // what a crash interrupted)

  Status Init();
  void Routes();
  void Maintain();
  void Background();

  // Authorization: a node's credentials or the admin token.
  StatusOr<std::string> Node(const httplib::Request& req) {
    const std::string token = Bearer(req);
    if (token.empty()) return UnauthenticatedError("missing Authorization: Bearer node_id:secret");
    return queue->AuthenticateNode(token);
  }
  Status Admin(const httplib::Request& req) {
    const std::string token = Bearer(req);
    if (token.empty()) return UnauthenticatedError("missing Authorization: Bearer <admin token>");
    return queue->CheckToken(TokenKind::kAdmin, token);
  }
  Status NodeOrAdmin(const httplib::Request& req) {
    const std::string token = Bearer(req);
    if (token.find(':') != std::string::npos) return Node(req).status();
    return Admin(req);
  }
  StatusOr<Json> JsonBody(const httplib::ContentReader& reader) {
    IDLEGRID_ASSIGN_OR_RETURN(std::string body, ReadBody(reader, options.max_json_bytes));
    return ParseJson(body);
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Stop(); }

StatusOr<std::unique_ptr<Server>> Server::Create(ServerOptions options) {
  if (options.data_dir.empty()) return InvalidArgumentError("--data is required");
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  IDLEGRID_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Status Server::Impl::Init() {
  const std::string& d = options.data_dir;
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(d, 0700));
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(d + "/tls", 0700));
  std::string cert = options.cert_file, key = options.key_file;
  if (cert.empty() != key.empty()) return InvalidArgumentError("give both --cert and --key, or neither");
  if (cert.empty()) {
    cert = d + "/tls/cert.pem";
    key = d + "/tls/key.pem";
    struct stat st;
    if (::stat(cert.c_str(), &st) != 0) {
      std::vector<std::string> hosts{"localhost", "127.0.0.1", "::1"};
      if (!options.public_name.empty()) hosts.push_back(options.public_name);
      if (options.host != "0.0.0.0" && options.host != "::" && options.host != "127.0.0.1") hosts.push_back(options.host);
      IDLEGRID_RETURN_IF_ERROR(GenerateSelfSignedCert(cert, key, hosts));
      first.created = true;
    }
  }
  options.cert_file = cert;
  options.key_file = key;
  IDLEGRID_ASSIGN_OR_RETURN(std::string cert_pem, ReadFile(cert, 1 << 20));
  IDLEGRID_ASSIGN_OR_RETURN(fingerprint, CertificateFingerprint(cert_pem));

  const std::string signing = d + "/signing.pem";
  struct stat st;
  if (::stat(signing.c_str(), &st) != 0) {
    IDLEGRID_ASSIGN_OR_RETURN(PrivateKey k, PrivateKey::Generate());
    IDLEGRID_RETURN_IF_ERROR(k.SavePem(signing));
    first.created = true;
  }
  IDLEGRID_ASSIGN_OR_RETURN(PrivateKey signing_key, PrivateKey::LoadPem(signing));
  BlobStoreOptions bo;
  bo.max_blob_bytes = options.max_blob_bytes;
  IDLEGRID_ASSIGN_OR_RETURN(blobs, BlobStore::Open(d + "/blobs", bo));
  IDLEGRID_ASSIGN_OR_RETURN(queue, Queue::Open(d + "/server.db", blobs.get(), std::move(signing_key),
                                               options.queue, options.clock));
  // Tokens exist once: created with the database, kept in 0600 files for the admin.
  if (::stat((d + "/admin.token").c_str(), &st) != 0) {
    IDLEGRID_ASSIGN_OR_RETURN(first.admin_token, queue->CreateToken(TokenKind::kAdmin, "first start"));
    IDLEGRID_ASSIGN_OR_RETURN(first.enroll_token, queue->CreateToken(TokenKind::kEnroll, "first start"));
    IDLEGRID_RETURN_IF_ERROR(WriteFileAtomic(d + "/enroll.token", first.enroll_token + "\n", 0600));
    IDLEGRID_RETURN_IF_ERROR(WriteFileAtomic(d + "/admin.token", first.admin_token + "\n", 0600));
    first.created = true;
  }
  // Preparation and assimilation run on the background thread, never inside a request (a
  // stitch of a large output would hold a node's `complete` past its timeout).
  queue->SetWakeup([this] {
    {
      std::lock_guard<std::mutex> lock(mu);
      work = true;
    }
    cv.notify_all();
  });
  return Status::Ok();
}

Status Server::Start() {
  Impl& s = *impl_;
  s.http = std::make_unique<httplib::SSLServer>(s.options.cert_file.c_str(), s.options.key_file.c_str());
  if (!s.http->is_valid()) return InvalidArgumentError("cannot load the TLS certificate " + s.options.cert_file);
  // Measured: without TCP_NODELAY and long keep-alive, small requests crawl (23 -> 9,000/s).
  s.http->set_tcp_nodelay(true);
  s.http->set_keep_alive_max_count(1000000);
  s.http->set_keep_alive_timeout(s.options.keep_alive_s);  // also bounds a SIGTERM's wait
  s.http->set_read_timeout(60, 0);
  s.http->set_write_timeout(60, 0);
  s.http->set_payload_max_length(static_cast<size_t>(s.options.max_blob_bytes));
  const int threads = std::max(2, s.options.threads);
  s.http->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.Routes();
  if (s.options.port == 0) {
    s.port = s.http->bind_to_any_port(s.options.host.c_str());
    if (s.port < 0) return UnavailableError("cannot bind " + s.options.host);
  } else {
    if (!s.http->bind_to_port(s.options.host.c_str(), s.options.port)) {
      return UnavailableError("cannot listen on " + s.options.host + ":" + std::to_string(s.options.port));
    }
    s.port = s.options.port;
  }
  s.listener = std::thread([&s] { s.http->listen_after_bind(); });
  // httplib's stop() does nothing until the listener runs: a Stop() right after Start()
  // would leave it blocked in accept() for ever. Return only once it runs (bounded).
  for (int i = 0; i < 5000 && !s.http->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!s.http->is_running()) return UnavailableError("the HTTPS listener did not start");
  s.maintenance = std::thread([&s] { s.Maintain(); });
  s.background = std::thread([&s] { s.Background(); });
  return Status::Ok();
}

void Server::Impl::Maintain() {
  std::unique_lock<std::mutex> lock(mu);
  while (!stopping) {
    cv.wait_for(lock, std::chrono::milliseconds(options.maintenance_interval_ms));
    if (stopping) break;
    lock.unlock();
    StatusOr<int> n = queue->ExpireLeases();
    if (!n.ok()) {
      IDLEGRID_LOG(kWarning) << "lease expiry: " << n.status().ToString();
    }
    Status c = queue->Checkpoint();
    if (!c.ok()) {
      IDLEGRID_LOG(kWarning) << "checkpoint: " << c.ToString();
    }
    lock.lock();
  }
}

// Cuts units' inputs and assimilates finished stages (then prepares the next stage), when
// woken and, as a safety net, every maintenance interval.
void Server::Impl::Background() {
  std::unique_lock<std::mutex> lock(mu);
  while (!stopping) {
    cv.wait_for(lock, std::chrono::milliseconds(options.maintenance_interval_ms), [this] { return work || stopping; });
    if (stopping) break;
    work = false;
    lock.unlock();
    for (int pass = 0; pass < 2; ++pass) {
      Status p = queue->PreparePending();
      if (!p.ok()) {
        IDLEGRID_LOG(kWarning) << "preparation: " << p.ToString();
      }
      if (pass == 1) break;
      Status a = queue->AssimilatePending();
      if (!a.ok()) {
        IDLEGRID_LOG(kWarning) << "assimilation: " << a.ToString();
      }
    }
    lock.lock();
  }
}

void Server::Stop() {
  Impl& s = *impl_;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.stopping && !s.listener.joinable()) return;
    s.stopping = true;
  }
  if (s.queue) s.queue->StopBackground();  // a long cut stops between chunks
  s.cv.notify_all();
  if (s.http) s.http->stop();
  if (s.listener.joinable()) s.listener.join();
  if (s.maintenance.joinable()) s.maintenance.join();
  if (s.background.joinable()) s.background.join();
}

void Server::Wait() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->cv.wait(lock, [this] { return impl_->stopping; });
}

int Server::port() const { return impl_->port; }
std::string Server::url() const {
  const std::string& h = impl_->options.host;
  const std::string host = (h == "0.0.0.0" || h == "::") ? "127.0.0.1" : h;
  return "https://" + host + ":" + std::to_string(impl_->port);
}
const std::string& Server::fingerprint() const { return impl_->fingerprint; }
const FirstStart& Server::first_start() const { return impl_->first; }
Queue& Server::queue() { return *impl_->queue; }
const std::string& Server::data_dir() const { return impl_->options.data_dir; }

// --- routes -------------------------------------------------------------------------------

void Server::Impl::Routes() {
  using httplib::ContentReader;
  using httplib::Request;
  using httplib::Response;
  httplib::SSLServer& h = *http;

  // Every JSON route: authorize, read a bounded body, call the queue, map errors.
  auto post = [this, &h](const std::string& pattern,
                         std::function<Status(const Request&, const Json&, Response&)> fn) {
    h.Post(pattern, [this, fn](const Request& req, Response& res, const ContentReader& reader) {
      StatusOr<Json> body = JsonBody(reader);
      if (!body.ok()) return SendError(res, body.status());
      Status st = fn(req, *body, res);
      if (!st.ok()) SendError(res, st);
    });
  };
  auto get = [&h](const std::string& pattern, std::function<Status(const Request&, Response&)> fn) {
    h.Get(pattern, [fn](const Request& req, Response& res) {
      Status st = fn(req, res);
      if (!st.ok()) SendError(res, st);
    });
  };

  h.Get("/", [](const Request&, Response& res) { res.set_content(kAdminPage, "text/html; charset=utf-8"); });

  get("/api/v1/health", [this](const Request&, Response& res) {
    SendJson(res, 200, {{"ok", true}, {"schema", kSchemaVersion}, {"key_id", queue->public_key().KeyId()},
                        {"public_key", queue->public_key().ToPem()}});
    return Status::Ok();
  });

  // --- nodes ---
  post("/api/v1/enroll", [this](const Request&, const Json& body, Response& res) -> Status {
    if (!body.is_object() || !body.contains("token") || !body["token"].is_string() || !body.contains("node")) {
      return InvalidArgumentError("enroll needs {\"token\": ..., \"node\": {...}}");
    }
    IDLEGRID_ASSIGN_OR_RETURN(NodeInfo info, NodeInfo::FromJson(WithSchema(body["node"])));
    IDLEGRID_ASSIGN_OR_RETURN(NodeCredentials c, queue->Enroll(body["token"].get<std::string>(), info));
    SendJson(res, 201, {{"node_id", c.node_id}, {"secret", c.secret},
                        {"key_id", queue->public_key().KeyId()}, {"public_key", queue->public_key().ToPem()}});
    return Status::Ok();
  });
  post("/api/v1/lease", [this](const Request& req, const Json& body, Response& res) -> Status {
    IDLEGRID_ASSIGN_OR_RETURN(std::string node, Node(req));
    if (!body.is_object() || !body.contains("node")) return InvalidArgumentError("lease needs {\"node\": {...}}");
    IDLEGRID_ASSIGN_OR_RETURN(NodeInfo info, NodeInfo::FromJson(WithSchema(body["node"])));
    IDLEGRID_ASSIGN_OR_RETURN(std::optional<SignedUnit> env, queue->Lease(node, info));
    if (!env) {
      res.status = 204;
      return Status::Ok();
    }
    SendJson(res, 200, env->ToJson());
    return Status::Ok();
  });
  post(R"(/api/v1/leases/([A-Za-z0-9_-]{1,64})/heartbeat)",
       [this](const Request& req, const Json& body, Response& res) -> Status {
         IDLEGRID_ASSIGN_OR_RETURN(std::string node, Node(req));
         IDLEGRID_ASSIGN_OR_RETURN(Heartbeat hb, Heartbeat::FromJson(WithSchema(body)));
         if (hb.lease_id != req.matches[1]) return InvalidArgumentError("lease id in path and body differ");
         IDLEGRID_ASSIGN_OR_RETURN(HeartbeatReply reply, queue->Beat(node, hb));
         SendJson(res, 200, reply.ToJson());
         return Status::Ok();
       });
  post(R"(/api/v1/leases/([A-Za-z0-9_-]{1,64})/complete)",
       [this](const Request& req, const Json& body, Response& res) -> Status {
         IDLEGRID_ASSIGN_OR_RETURN(std::string node, Node(req));
         IDLEGRID_ASSIGN_OR_RETURN(Result r, Result::FromJson(WithSchema(body)));
         if (r.lease_id != req.matches[1]) return InvalidArgumentError("lease id in path and body differ");
         IDLEGRID_RETURN_IF_ERROR(queue->Complete(node, r));
         SendJson(res, 200, {{"ok", true}});
         return Status::Ok();
       });
  post(R"(/api/v1/leases/([A-Za-z0-9_-]{1,64})/abort)",
       [this](const Request& req, const Json& body, Response& res) -> Status {
         IDLEGRID_ASSIGN_OR_RETURN(std::string node, Node(req));
         IDLEGRID_ASSIGN_OR_RETURN(AbortRequest a, AbortRequest::FromJson(WithSchema(body)));
         IDLEGRID_RETURN_IF_ERROR(queue->Abort(node, req.matches[1], a.reason, a.failed, a.checkpoint));
         SendJson(res, 200, {{"ok", true}});
         return Status::Ok();
       });

  // --- blobs ---
  h.Put(R"(/api/v1/blobs/([^/]+))", [this](const Request& req, Response& res, const ContentReader& reader) {
    Status auth = NodeOrAdmin(req);
    if (!auth.ok()) return SendError(res, auth);
    const std::string name = req.matches[1];
    if (!IsHex64(name)) return SendError(res, InvalidArgumentError("blob names are 64 lowercase hex digits"));
    StatusOr<std::unique_ptr<BlobStore::Writer>> w = blobs->NewWriter(name);
    if (!w.ok()) return SendError(res, w.status());
    Status failed;
    reader([&](const char* data, size_t len) {
      failed = (*w)->Append(data, len);
      return failed.ok();
    });
    if (!failed.ok()) return SendError(res, failed);
    StatusOr<BlobRef> ref = (*w)->Commit();
    if (!ref.ok()) return SendError(res, ref.status());
    Status rec = queue->RecordBlob(*ref);
    if (!rec.ok()) return SendError(res, rec);
    SendJson(res, 201, ref->ToJson());
  });
  auto send_blob = [this](const std::string& sha, Response& res) -> Status {
    IDLEGRID_ASSIGN_OR_RETURN(std::string path, blobs->PathOf(sha));
    IDLEGRID_ASSIGN_OR_RETURN(BlobRef ref, blobs->Stat(sha));
    auto file = std::make_shared<std::FILE*>(std::fopen(path.c_str(), "rb"));
    if (*file == nullptr) return IoError("cannot open blob " + sha);
    res.set_header("X-Content-SHA256", sha);
    // httplib answers Range requests from this provider (206 + Content-Range).
    res.set_content_provider(
        static_cast<size_t>(ref.size), "application/octet-stream",
        [file](size_t offset, size_t length, httplib::DataSink& sink) {
          char buf[1 << 16];
          if (std::fseek(*file, static_cast<long>(offset), SEEK_SET) != 0) return false;
          while (length > 0) {
            const size_t n = std::fread(buf, 1, std::min(length, sizeof(buf)), *file);
            if (n == 0) return false;
            if (!sink.write(buf, n)) return false;
            length -= n;
          }
          return true;
        },
        [file](bool) { std::fclose(*file); });
    return Status::Ok();
  };
  get(R"(/api/v1/blobs/([^/]+))", [this, send_blob](const Request& req, Response& res) -> Status {
    IDLEGRID_RETURN_IF_ERROR(NodeOrAdmin(req));
    const std::string name = req.matches[1];
    if (!IsHex64(name)) return InvalidArgumentError("blob names are 64 lowercase hex digits");
    return send_blob(name, res);
  });

  // --- jobs (admin token) ---
  post("/api/v1/jobs", [this](const Request& req, const Json& body, Response& res) -> Status {
    IDLEGRID_RETURN_IF_ERROR(Admin(req));
    Json j = body;
    // The server names the job and stamps it; clients may leave these out.
    if (j.is_object()) {
      j["job_id"] = "new";
      j["submitted_at"] = 0;
      if (!j.contains("schema")) j["schema"] = kSchemaVersion;
      if (!j.contains("name")) j["name"] = "";
      if (!j.contains("config")) j["config"] = Json::object();
    }
    IDLEGRID_ASSIGN_OR_RETURN(Job job, Job::FromJson(j));
    IDLEGRID_ASSIGN_OR_RETURN(std::string id, queue->Submit(job));
    IDLEGRID_ASSIGN_OR_RETURN(Json status, queue->JobStatus(id));
    SendJson(res, 201, status);
    return Status::Ok();
  });
  get("/api/v1/jobs", [this](const Request& req, Response& res) -> Status {
    IDLEGRID_RETURN_IF_ERROR(Admin(req));
    IDLEGRID_ASSIGN_OR_RETURN(Json jobs, queue->Jobs());
    SendJson(res, 200, {{"jobs", jobs}});
    return Status::Ok();
  });
  get(R"(/api/v1/jobs/([A-Za-z0-9_-]{1,64}))", [this](const Request& req, Response& res) -> Status {
    IDLEGRID_RETURN_IF_ERROR(Admin(req));
    IDLEGRID_ASSIGN_OR_RETURN(Json status, queue->JobStatus(req.matches[1]));
    SendJson(res, 200, status);
    return Status::Ok();
  });
  post(R"(/api/v1/jobs/([A-Za-z0-9_-]{1,64})/cancel)", [this](const Request& req, const Json&, Response& res) -> Status {
    IDLEGRID_RETURN_IF_ERROR(Admin(req));
    IDLEGRID_RETURN_IF_ERROR(queue->Cancel(req.matches[1]));
    SendJson(res, 200, {{"ok", true}});
    return Status::Ok();
  });
  get(R"(/api/v1/jobs/([A-Za-z0-9_-]{1,64})/outputs/([a-z0-9_.-]{1,64}))",
      [this, send_blob](const Request& req, Response& res) -> Status {
        IDLEGRID_RETURN_IF_ERROR(Admin(req));
        IDLEGRID_ASSIGN_OR_RETURN(Json status, queue->JobStatus(req.matches[1]));
        const std::string name = req.matches[2];
        if (!status["outputs"].contains(name)) {
          return NotFoundError("job " + std::string(req.matches[1]) + " has no output \"" + name + "\" (yet)");
        }
        return send_blob(status["outputs"][name]["sha256"].get<std::string>(), res);
      });

  // --- admin ---
  get("/api/v1/nodes", [this](const Request& req, Response& res) -> Status {
    IDLEGRID_RETURN_IF_ERROR(Admin(req));
    IDLEGRID_ASSIGN_OR_RETURN(Json nodes, queue->Nodes());
    SendJson(res, 200, {{"nodes", nodes}});
    return Status::Ok();
  });
  post(R"(/api/v1/nodes/([A-Za-z0-9_-]{1,64})/revoke)", [this](const Request& req, const Json&, Response& res) -> Status {
    IDLEGRID_RETURN_IF_ERROR(Admin(req));
    IDLEGRID_RETURN_IF_ERROR(queue->RevokeNode(req.matches[1]));
    SendJson(res, 200, {{"ok", true}});
    return Status::Ok();
  });
  get("/api/v1/stats", [this](const Request& req, Response& res) -> Status {
    IDLEGRID_RETURN_IF_ERROR(Admin(req));
    IDLEGRID_ASSIGN_OR_RETURN(Json stats, queue->Stats());
    SendJson(res, 200, stats);
    return Status::Ok();
  });
  get("/api/v1/queue", [this](const Request& req, Response& res) -> Status {
    IDLEGRID_RETURN_IF_ERROR(Admin(req));
    IDLEGRID_ASSIGN_OR_RETURN(Json jobs, queue->Jobs(1000));
    Json open = Json::array();
    for (const Json& j : jobs) {
      if (j["state"] == "queued" || j["state"] == "running") open.push_back(j);
    }
    std::reverse(open.begin(), open.end());  // FIFO: oldest first
    SendJson(res, 200, {{"queue", open}});
    return Status::Ok();
  });
  post("/api/v1/tokens", [this](const Request& req, const Json& body, Response& res) -> Status {
    IDLEGRID_RETURN_IF_ERROR(Admin(req));
    const std::string label = body.is_object() && body.contains("label") && body["label"].is_string()
                                  ? body["label"].get<std::string>().substr(0, 200) : "";
    IDLEGRID_ASSIGN_OR_RETURN(std::string token, queue->CreateToken(TokenKind::kEnroll, label));
    SendJson(res, 201, {{"token", token}, {"kind", "enroll"}});
    return Status::Ok();
  });
  post("/api/v1/tokens/revoke", [this](const Request& req, const Json& body, Response& res) -> Status {
    IDLEGRID_RETURN_IF_ERROR(Admin(req));
    if (!body.is_object() || !body.contains("prefix") || !body["prefix"].is_string()) {
      return InvalidArgumentError("revoke needs {\"prefix\": first 8 characters of the token}");
    }
    IDLEGRID_RETURN_IF_ERROR(queue->RevokeToken(body["prefix"].get<std::string>()));
    SendJson(res, 200, {{"ok", true}});
    return Status::Ok();
  });

  h.set_error_handler([](const Request&, Response& res) {
    if (res.body.empty()) {
      res.set_content(Json{{"error", "HTTP " + std::to_string(res.status)}}.dump(), "application/json");
    }
  });
  h.set_exception_handler([](const Request&, Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    IDLEGRID_LOG(kError) << "request failed: " << what;
    SendJson(res, 500, {{"error", "internal error: " + what}, {"code", "INTERNAL"}});
  });
}

}  // namespace idlegrid::server
