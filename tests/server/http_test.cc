// The server's HTTPS API with a real TLS server on 127.0.0.1 and the real client.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <catch2/catch.hpp>

#include "idlegrid/server/server.h"
#include "idlegrid/shared/api_client.h"
#include "idlegrid/shared/crypto.h"
#include "server/server_fixtures.h"

namespace idlegrid {
namespace {

using testing::Must;
using testing::Node;
using testing::Ramp;
using testing::TempDir;
using testing::TinyConfig;

struct Running {
  TempDir dir;
  std::unique_ptr<server::Server> server;
  std::string admin, enroll;

  explicit Running(server::ServerOptions o = {}) {
    o.data_dir = dir / "data";
    o.port = 0;
    server = Must(server::Server::Create(o));
    Must(server->Start());
    admin = server->first_start().admin_token;
    enroll = server->first_start().enroll_token;
  }
  std::unique_ptr<ApiClient> Client(const std::string& token) {
    HttpClientOptions o;
    o.base_url = server->url();
    o.pinned_cert_sha256 = server->fingerprint();
    o.bearer_token = token;
    o.max_attempts = 1;
    return Must(ApiClient::Create(o));
  }
  std::string Path(const std::string& name) { return dir / name; }
};

// The job's status once it is `state` (the server assimilates and prepares in the
// background), or whatever it is after 20 s.
Json WaitForState(ApiClient& admin, const std::string& job_id, const std::string& state) {
  Json j;
  for (int i = 0; i < 400; ++i) {
    j = Must(admin.JobStatus(job_id));
    if (j["state"] == state) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return j;
}

// The next lease, waiting (bounded) while the job's units are being prepared.
std::string LeaseWhenReady(ApiClient& node) {
  for (int i = 0; i < 400; ++i) {
    std::optional<std::string> text = Must(node.Lease(Node()));
    if (text) return *text;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("no unit became ready within 20 s");
}

std::unique_ptr<httplib::SSLClient> RawClient(Running& r) {
  auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", r.server->port());
  c->enable_server_certificate_verification(false);  // raw requests only; pinning is tested via ApiClient
  return c;
}

TEST_CASE("first start creates keys and tokens, and a restart keeps them", "[server][http]") {
  TempDir dir;
  server::ServerOptions o;
  o.data_dir = dir / "data";
  o.port = 0;
  std::string fingerprint, key_id;
  {
    auto s = Must(server::Server::Create(o));
    CHECK(s->first_start().created);
    CHECK(s->first_start().admin_token.size() == 48);
    CHECK(testing::Slurp(dir / "data/admin.token") == s->first_start().admin_token + "\n");
    fingerprint = s->fingerprint();
    key_id = s->queue().public_key().KeyId();
  }
  auto s = Must(server::Server::Create(o));
  CHECK_FALSE(s->first_start().created);
  CHECK(s->fingerprint() == fingerprint);
  CHECK(s->queue().public_key().KeyId() == key_id);
}

TEST_CASE("a server stopped right after it starts stops", "[server][http]") {
  // Once hung in accept() for ever: httplib ignores stop() until its listener runs.
  TempDir dir;
  server::ServerOptions o;
  o.data_dir = dir / "data";
  o.port = 0;
  // Whether anything accepts TCP connections on 127.0.0.1:port.
  auto accepts = [](int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    return ok;
  };
  for (int i = 0; i < 20; ++i) {
    auto s = Must(server::Server::Create(o));
    Must(s->Start());
    const int port = s->port();
    REQUIRE(port > 0);
    s->Stop();
    CHECK_FALSE(accepts(port));  // the listener is closed once Stop() returns
  }
}

TEST_CASE("enrollment and authorization", "[server][http]") {
  Running r;
  auto anon = r.Client("");
  CHECK(Must(anon->Health())["ok"] == true);
  CHECK(anon->Enroll("wrong", Node()).status().code() == StatusCode::kUnauthenticated);
  CHECK(anon->Enroll(r.admin, Node()).status().code() == StatusCode::kUnauthenticated);
  Enrollment e = Must(anon->Enroll(r.enroll, Node()));
  CHECK(e.key_id == r.server->queue().public_key().KeyId());
  CHECK(Must(PublicKey::FromPem(e.public_key_pem)).KeyId() == e.key_id);

  auto node = r.Client(e.node_id + ":" + e.secret);
  auto forged = r.Client(e.node_id + ":" + std::string(64, '0'));
  auto admin = r.Client(r.admin);
  CHECK(Must(node->Lease(Node())) == std::nullopt);  // nothing queued
  CHECK(forged->Lease(Node()).status().code() == StatusCode::kUnauthenticated);
  CHECK(anon->Lease(Node()).status().code() == StatusCode::kUnauthenticated);
  // Admin endpoints refuse nodes and anonymous callers.
  CHECK(node->Jobs().status().code() == StatusCode::kUnauthenticated);
  CHECK(anon->Stats().status().code() == StatusCode::kUnauthenticated);
  CHECK(Must(admin->Stats())["nodes"] == 1);
  // A wrong fingerprint is refused before anything is sent.
  HttpClientOptions o;
  o.base_url = r.server->url();
  o.pinned_cert_sha256 = std::string(64, 'a');
  o.max_attempts = 1;
  auto mitm = Must(ApiClient::Create(o));
  CHECK(mitm->Health().status().code() == StatusCode::kPermissionDenied);
  // New enrollment tokens work; revoked nodes are refused.
  const std::string token2 = Must(admin->NewEnrollToken("lab 2"));
  Enrollment e2 = Must(anon->Enroll(token2, Node()));
  Must(admin->RevokeNode(e2.node_id));
  CHECK(r.Client(e2.node_id + ":" + e2.secret)->Lease(Node()).status().code() == StatusCode::kUnauthenticated);
  CHECK(Must(admin->Nodes())["nodes"].size() == 2);
}

TEST_CASE("a unit's whole life over HTTPS", "[server][http]") {
  Running r;
  auto admin = r.Client(r.admin);
  Enrollment e = Must(r.Client("")->Enroll(r.enroll, Node()));
  auto node = r.Client(e.node_id + ":" + e.secret);
  const PublicKey pinned = Must(PublicKey::FromPem(e.public_key_pem));

  // Labels on slice 4 of 6: the unit's inputs are cut to that slice (a 2D network needs no
  // neighbours), and that is all the node downloads.
  const Volume image = Ramp(6, 32, 32);
  Volume labels = Must(Volume::Create({6, 32, 32, 1}, DType::kUInt8));
  for (int64_t i = 0; i < 32 * 32; ++i) labels.slice_bytes_at(4)[i] = static_cast<uint8_t>(1 + i % 2);
  Must(WriteTiff(r.Path("image.tif"), image));
  Must(WriteTiff(r.Path("labels.tif"), labels));
  Job job;
  job.kind = JobKind::kTrain;
  job.inputs["image"] = Must(admin->UploadFile(r.Path("image.tif")));
  job.inputs["labels"] = Must(admin->UploadFile(r.Path("labels.tif")));
  job.config = {{"model", models::ConfigToJson(TinyConfig("m", 2))}, {"epochs_per_unit", 2}};
  const Json submitted = Must(admin->Submit(job));
  const std::string job_id = submitted["job_id"];
  CHECK(submitted["units"].size() == 1);

  const std::string text = LeaseWhenReady(*node);
  ReplayGuard replay;
  VerifyOptions vo;
  vo.node_id = e.node_id;
  vo.now = server::UnixNow();
  vo.replay = &replay;
  SignedUnit env = Must(VerifyUnit(text, pinned, vo));
  // The same envelope again is a replay; an altered one fails the signature.
  CHECK(VerifyUnit(text, pinned, vo).status().code() == StatusCode::kFailedPrecondition);
  Json altered = Must(ParseJson(text));
  altered["unit"]["epochs"]["end"] = 1;
  CHECK(VerifyUnit(altered.dump(), pinned, VerifyOptions{e.node_id, vo.now, nullptr}).status().code() ==
        StatusCode::kPermissionDenied);

  // Inputs download with hash checks: the labelled slice alone.
  REQUIRE(env.unit.region.has_value());
  CHECK(*env.unit.region == SliceRegion::Around({4}, 0, 6));
  Must(node->DownloadBlob(env.unit.inputs.at("image"), r.Path("in.tif")));
  CHECK(Must(ReadTiff(r.Path("in.tif"))) == Must(ReadTiff(r.Path("image.tif"), TiffReadOptions{4, 5})));
  Must(node->DownloadBlob(env.unit.inputs.at("labels"), r.Path("labels-in.tif")));
  CHECK(Must(ReadTiff(r.Path("labels-in.tif"))) == Must(ExtractRegion(labels, *env.unit.region)));

  // Checkpoint upload + heartbeat.
  testing::Spit(r.Path("ckpt"), "checkpoint bytes");
  Heartbeat hb;
  hb.lease_id = env.lease_id;
  hb.node_id = e.node_id;
  hb.progress = 0.5;
  hb.epoch = 1;
  hb.checkpoint = Must(node->UploadFile(r.Path("ckpt")));
  CHECK(Must(node->Beat(hb)).action == HeartbeatAction::kContinue);
  CHECK(Must(admin->JobStatus(job_id))["units"][0]["epochs_done"] == 1);

  Result res;
  res.lease_id = env.lease_id;
  res.unit_id = env.unit.unit_id;
  res.node_id = e.node_id;
  res.outputs["checkpoint"] = *hb.checkpoint;
  res.outputs["metrics"] = Must(node->UploadBytes(R"({"history":[{"mean_dice":0.75}]})"));
  res.outputs["model"] = Must(node->UploadBytes("model package"));
  Must(node->Complete(res));
  // A retry of the same result (its response was lost) is accepted once more and changes
  // nothing; another result for the same lease is refused.
  Must(node->Complete(res));
  Result other = res;
  other.outputs["model"] = Must(node->UploadBytes("another model"));
  CHECK(node->Complete(other).code() == StatusCode::kFailedPrecondition);
  const Json done = WaitForState(*admin, job_id, "done");
  CHECK(done["state"] == "done");
  Must(admin->FetchOutput(job_id, "model", r.Path("model.pt")));
  CHECK(testing::Slurp(r.Path("model.pt")) == "model package");
  CHECK(admin->FetchOutput(job_id, "labels", r.Path("x")).code() == StatusCode::kNotFound);
}

TEST_CASE("bad requests are refused with clear errors and change nothing", "[server][http]") {
  server::ServerOptions o;
  o.max_json_bytes = 64 * 1024;
  Running r(o);
  auto admin = r.Client(r.admin);
  auto raw = RawClient(r);
  const httplib::Headers auth{{"Authorization", "Bearer " + r.admin}};
  const Json before = Must(admin->Stats());

  auto oversize = raw->Post("/api/v1/jobs", auth, std::string(100 * 1024, ' ') + "{}", "application/json");
  REQUIRE(oversize);
  CHECK(oversize->status == 413);
  CHECK_THAT(oversize->body, Catch::Contains("exceeds"));
  auto malformed = raw->Post("/api/v1/jobs", auth, "{\"kind\": ", "application/json");
  REQUIRE(malformed);
  CHECK(malformed->status == 400);
  CHECK(Must(ParseJson(malformed->body)).contains("error"));
  auto unknown_field = raw->Post("/api/v1/jobs", auth, R"({"kind":"train","inputs":{},"code":"rm -rf /"})", "application/json");
  REQUIRE(unknown_field);
  CHECK(unknown_field->status == 400);
  auto traversal = raw->Get("/api/v1/blobs/..%2f..%2fserver.db", auth);
  REQUIRE(traversal);
  CHECK((traversal->status == 400 || traversal->status == 404));
  auto upper = raw->Put("/api/v1/blobs/" + std::string(64, 'A'), auth, "x", "application/octet-stream");
  REQUIRE(upper);
  CHECK(upper->status == 400);

  // An upload whose bytes do not match its name is refused and not stored.
  const std::string bytes = "some bytes";
  auto wrong = raw->Put("/api/v1/blobs/" + Sha256Hex("other bytes"), auth, bytes, "application/octet-stream");
  REQUIRE(wrong);
  CHECK(wrong->status == 422);
  CHECK(raw->Get("/api/v1/blobs/" + Sha256Hex("other bytes"), auth)->status == 404);
  auto right = raw->Put("/api/v1/blobs/" + Sha256Hex(bytes), auth, bytes, "application/octet-stream");
  REQUIRE(right);
  CHECK(right->status == 201);

  Json after = Must(admin->Stats());
  CHECK(after["jobs"] == before["jobs"]);
  CHECK(after["blobs"] == 1);
}

TEST_CASE("blob downloads honour Range requests", "[server][http]") {
  Running r;
  auto admin = r.Client(r.admin);
  std::string data;
  for (int i = 0; i < 100000; ++i) data.push_back(static_cast<char>(i * 31 % 256));
  const BlobRef ref = Must(admin->UploadBytes(data));
  auto raw = RawClient(r);
  auto part = raw->Get("/api/v1/blobs/" + ref.sha256,
                       {{"Authorization", "Bearer " + r.admin}, {"Range", "bytes=1000-1999"}});
  REQUIRE(part);
  CHECK(part->status == 206);
  CHECK(part->body == data.substr(1000, 1000));
  // The client resumes a partial download and verifies the whole.
  testing::Spit(r.Path("out.part"), data.substr(0, 40000));
  Must(admin->DownloadBlob(ref, r.Path("out")));
  CHECK(testing::Slurp(r.Path("out")) == data);
}

TEST_CASE("a node can be enrolled with curl", "[server][http]") {
  if (::access("/usr/bin/curl", X_OK) != 0) {
    FAIL("needs /usr/bin/curl (scripts/packages.txt installs it)");
  }
  Running r;
  const std::string cmd =
      "/usr/bin/curl -s --cacert " + r.dir / "data/tls/cert.pem" + " " + r.server->url() +
      "/api/v1/enroll -d '{\"token\": \"" + r.enroll +
      "\", \"node\": {\"hostname\": \"curl\", \"os\": \"Linux\", \"version\": \"curl\", \"cores\": 2, "
      "\"ram_bytes\": 4000000000, \"gpus\": []}}'";
  int rc = -1;
  const Json reply = Must(ParseJson(testing::RunCommand(cmd, &rc)));
  CHECK(rc == 0);
  REQUIRE(reply.contains("node_id"));
  CHECK(Must(r.server->queue().AuthenticateNode(reply["node_id"].get<std::string>() + ":" +
                                                reply["secret"].get<std::string>())) == reply["node_id"]);
}

}  // namespace
}  // namespace idlegrid
