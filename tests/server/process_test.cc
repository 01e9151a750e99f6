// idlegrid-server and idlegrid as real processes: first start, SIGTERM, kill -9 under load
// and restart without loss, and the console against a running server.
#include <algorithm>
#include <catch2/catch.hpp>

#include <atomic>
#include <set>
#include <thread>

#include "child_process.h"
#include "idlegrid/shared/api_client.h"
#include "server/server_fixtures.h"

namespace idlegrid {
namespace {

using testing::ChildProcess;
using testing::Must;
using testing::Node;
using testing::Ramp;
using testing::TempDir;
using testing::TinyConfig;

const std::string kBin = IDLEGRID_BIN_DIR;

// A server process on a free port; reads its first lines for the URL and fingerprint.
struct ServerProcess {
  std::unique_ptr<ChildProcess> child;
  std::string url, fingerprint;
  std::vector<std::string> lines;

  ServerProcess(const std::string& data, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv{kBin + "/idlegrid-server", "--data", data, "--listen", "127.0.0.1:0",
                                  "--lease-seconds", "5"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child = std::make_unique<ChildProcess>(argv);
    for (int i = 0; i < 20; ++i) {
      auto line = child->ReadLine(15000);
      if (!line) break;
      lines.push_back(*line);
      if (line->find("idlegrid-node enroll") != std::string::npos) break;  // the last line
      const std::string at = "listening on ";
      if (line->find(at) != std::string::npos) url = line->substr(line->find(at) + at.size());
      const std::string fp = "certificate fingerprint: ";
      if (line->find(fp) != std::string::npos) fingerprint = line->substr(line->find(fp) + fp.size());
    }
    REQUIRE_FALSE(url.empty());
    REQUIRE_FALSE(fingerprint.empty());
  }
  std::unique_ptr<ApiClient> Client(const std::string& token) {
    HttpClientOptions o;
    o.base_url = url;
    o.pinned_cert_sha256 = fingerprint;
    o.bearer_token = token;
    o.max_attempts = 1;
    o.timeout_ms = 10000;
    return Must(ApiClient::Create(o));
  }
};

using testing::Trim;

TEST_CASE("idlegrid-server prints how to reach it and stops cleanly on SIGTERM", "[server][process]") {
  TempDir dir;
  ServerProcess s(dir / "data");
  bool saw_token = false;
  for (const std::string& l : s.lines) saw_token |= l.find("admin token") != std::string::npos;
  CHECK(saw_token);
  CHECK(s.url.rfind("https://127.0.0.1:", 0) == 0);
  CHECK(Must(s.Client("")->Health())["ok"] == true);
  s.child->Signal(SIGTERM);
  CHECK(s.child->Wait(10000) == 0);
}

TEST_CASE("kill -9 under load loses nothing that was acknowledged", "[server][process]") {
  TempDir dir;
  const std::string data = dir / "data";
  const Volume volume = Ramp(400, 8, 8);
  std::string job_id, admin;
  std::set<std::string> acknowledged;  // units whose completion the server confirmed
  std::mutex mu;
  {
    ServerProcess s(data, {"--slab-voxels", "64"});  // one slice per slab: 400 tiny units
    admin = Trim(testing::Slurp(data + "/admin.token"));
    const std::string enroll = Trim(testing::Slurp(data + "/enroll.token"));
    auto api = s.Client(admin);
    Must(WriteTiff(dir / "volume.tif", volume));
    Job job;
    job.kind = JobKind::kInfer;
    job.inputs["model"] = Must(api->UploadBytes("a model"));
    job.inputs["volume"] = Must(api->UploadFile(dir / "volume.tif"));
    job.config = {{"model", models::ConfigToJson(TinyConfig("m", 1))}};
    job_id = Must(api->Submit(job))["job_id"];
    // The server cuts each slab's slice from the volume in the background first.
    for (int i = 0; i < 600; ++i) {
      const Json status = Must(api->JobStatus(job_id));
      if (std::none_of(status["units"].begin(), status["units"].end(),
                       [](const Json& u) { return u["state"] == "preparing"; })) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }

    // Each slab's answer: its own slice of the volume.
    std::vector<BlobRef> slices;
    for (int64_t z = 0; z < volume.shape().z; ++z) {
      const std::string path = dir / ("slice" + std::to_string(z) + ".tif");
      Must(WriteTiff(path, Must(ExtractSlab(volume, SlabRange{z, z + 1, 0, 0}))));
      slices.push_back(Must(api->UploadFile(path)));
    }
    std::atomic<bool> stop{false};
    std::atomic<int> cycles{0};
    std::vector<std::thread> nodes;
    for (int n = 0; n < 3; ++n) {
      Enrollment e = Must(s.Client("")->Enroll(enroll, Node()));
      nodes.emplace_back([&, e] {
        auto c = s.Client(e.node_id + ":" + e.secret);
        for (int i = 0; i < 100000 && !stop; ++i) {
          StatusOr<std::optional<std::string>> text = c->Lease(Node());
          if (!text.ok() || !*text) return;
          SignedUnit env = Must(SignedUnit::FromJson(Must(ParseJson(**text))));
          Heartbeat hb;
          hb.lease_id = env.lease_id;
          hb.node_id = e.node_id;
          hb.progress = 0.5;
          if (!c->Beat(hb).ok()) return;
          Result r;
          r.lease_id = env.lease_id;
          r.unit_id = env.unit.unit_id;
          r.node_id = e.node_id;
          r.outputs["labels"] = slices[env.unit.slab->z_begin];
          if (!c->Complete(r).ok()) return;
          std::lock_guard<std::mutex> lock(mu);
          acknowledged.insert(r.unit_id);
          ++cycles;
        }
      });
    }
    // Kill it mid-load.
    for (int i = 0; i < 2000 && cycles < 60; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    s.child->Signal(SIGKILL);
    CHECK(s.child->Wait(5000) == 128 + SIGKILL);
    stop = true;
    for (std::thread& t : nodes) t.join();
  }
  REQUIRE(acknowledged.size() >= 60);
  REQUIRE(acknowledged.size() < 400);
  {
    // The database as the crash left it: intact, and every acknowledged unit is done.
    auto blobs = Must(BlobStore::Open(data + "/blobs"));
    auto q = Must(server::Queue::Open(data + "/server.db", blobs.get(), Must(PrivateKey::Generate())));
    CHECK(Must(q->IntegrityCheck()) == "ok");
    const Json status = Must(q->JobStatus(job_id));
    int done = 0;
    for (const Json& u : status["units"]) {
      const bool is_done = u["state"] == "done";
      done += is_done;
      if (acknowledged.count(u["unit_id"])) CHECK(is_done);
    }
    CHECK(done >= static_cast<int>(acknowledged.size()));
  }
  // Restart: leases of the killed server's nodes expire, and new nodes finish the job.
  ServerProcess s(data, {"--slab-voxels", "64"});
  auto api = s.Client(admin);
  Enrollment e = Must(s.Client("")->Enroll(Trim(testing::Slurp(data + "/enroll.token")), Node()));
  auto c = s.Client(e.node_id + ":" + e.secret);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < until) {
    std::optional<std::string> text = Must(c->Lease(Node()));
    if (!text) {
      if (Must(api->JobStatus(job_id))["state"] != "running") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // leases still to expire
      continue;
    }
    SignedUnit env = Must(SignedUnit::FromJson(Must(ParseJson(*text))));
    const int64_t z = env.unit.slab->z_begin;
    Must(WriteTiff(dir / "answer.tif", Must(ExtractSlab(volume, SlabRange{z, z + 1, 0, 0}))));
    Result r;
    r.lease_id = env.lease_id;
    r.unit_id = env.unit.unit_id;
    r.node_id = e.node_id;
    r.outputs["labels"] = Must(c->UploadFile(dir / "answer.tif"));
    Must(c->Complete(r));
  }
  const Json final_status = Must(api->JobStatus(job_id));
  REQUIRE(final_status["state"] == "done");
  Must(api->FetchOutput(job_id, "labels", dir / "labels.tif"));
  const Volume stitched = Must(ReadTiff(dir / "labels.tif"));
  REQUIRE(stitched.shape() == volume.shape());
  CHECK(std::memcmp(stitched.bytes(), volume.bytes(), volume.size_bytes()) == 0);
}

TEST_CASE("the idlegrid console submits a job and shows its units", "[server][process]") {
  TempDir dir;
  ServerProcess s(dir / "data");
  const std::string admin = Trim(testing::Slurp(dir / "data/admin.token"));
  Must(WriteTiff(dir / "image.tif", Ramp(3, 32, 32)));
  testing::Spit(dir / "model.json", models::ConfigToJson(TinyConfig("console", 4)).dump());
  const std::string cli = "IDLEGRID_CONFIG_DIR=" + dir / "config" + " " + kBin + "/idlegrid ";
  int rc = -1;
  testing::RunCommand(cli + "login --server " + s.url + " --fingerprint " + s.fingerprint + " --token " + admin +
                          " 2>&1",
                      &rc);
  REQUIRE(rc == 0);
  const std::string job = Trim(testing::RunCommand(cli + "submit train --image " + dir / "image.tif" + " --labels " +
                                                       dir / "image.tif" + " --model " + dir / "model.json" +
                                                       " --epochs-per-unit 2 2>/dev/null",
                                                   &rc));
  REQUIRE(rc == 0);
  REQUIRE_FALSE(job.empty());
  const std::string status = testing::RunCommand(cli + "status " + job, &rc);
  CHECK(rc == 0);
  CHECK_THAT(status, Catch::Contains(job + "-c0-e0") && Catch::Contains(job + "-c0-e2") &&
                         Catch::Contains("ready") && Catch::Contains("waiting"));
  CHECK_THAT(testing::RunCommand(cli + "jobs", &rc), Catch::Contains(job));
  testing::RunCommand(cli + "cancel " + job, &rc);
  CHECK(rc == 0);
  CHECK_THAT(testing::RunCommand(cli + "status " + job, &rc), Catch::Contains("cancelled"));
  // Errors are one clear line and a non-zero exit.
  const std::string err = testing::RunCommand(cli + "status jnope 2>&1", &rc);
  CHECK(rc != 0);
  CHECK_THAT(err, Catch::Contains("no job jnope"));
  CHECK_THAT(testing::RunCommand(cli + "--token wrong jobs 2>&1", &rc), Catch::Contains("not a valid admin token"));
  CHECK(rc != 0);
}

}  // namespace
}  // namespace idlegrid
