// The compute node end to end: a real server (in this process, real TLS on 127.0.0.1), real
// idlegrid-node processes and real idlegrid-worker training.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "child_process.h"
#include "idlegrid/client/node.h"
#include "idlegrid/models/config_json.h"
#include "idlegrid/models/model.h"
#include "idlegrid/server/server.h"
#include "idlegrid/shared/api_client.h"
#include "idlegrid/shared/crypto.h"
#include "idlegrid/shared/hdf5_io.h"
#include "idlegrid/shared/tiff_io.h"
#include "models/model_fixtures.h"
#include "test_util.h"

namespace idlegrid {
namespace {

using testing::ChildProcess;
using testing::TempDir;

const std::string kBin = IDLEGRID_BIN_DIR;
using Clock = std::chrono::steady_clock;

template <typename T>
T Must(StatusOr<T> v) {
  if (!v.ok()) FAIL(v.status().ToString());
  return std::move(*v);
}
void Must(const Status& s) {
  if (!s.ok()) FAIL(s.ToString());
}

// A server with short leases and frequent checkpoints, the small sample uploaded.
struct Grid {
  TempDir dir;
  std::unique_ptr<server::Server> server;
  std::unique_ptr<ApiClient> admin;
  BlobRef image, labels;
  int nodes = 0;

  Grid() {
    server::ServerOptions o;
    o.data_dir = dir / "server";
    o.port = 0;
    o.queue.lease_seconds = 4;
    o.queue.unit_threads = 1;
    o.queue.checkpoint_every_s = 1;
    o.maintenance_interval_ms = 200;
    server = Must(server::Server::Create(o));
    Must(server->Start());
    HttpClientOptions h;
    h.base_url = server->url();
    h.pinned_cert_sha256 = server->fingerprint();
    h.bearer_token = server->first_start().admin_token;
    admin = Must(ApiClient::Create(h));
    const MaterialsSample& s = testing::SmallSample();
    Must(WriteTiff(dir / "image.tif", s.image));
    Must(WriteTiff(dir / "labels.tif", s.scribbles));
    image = Must(admin->UploadFile(dir / "image.tif"));
    labels = Must(admin->UploadFile(dir / "labels.tif"));
  }

  // A node's own folders, enrolled through the real CLI; returns its environment prefix.
  std::vector<std::string> NewNode() {
    const std::string home = dir / ("node" + std::to_string(nodes++));
    std::vector<std::string> env{"/usr/bin/env", "IDLEGRID_CONFIG_DIR=" + home + "/config",
                                 "IDLEGRID_CACHE_DIR=" + home + "/cache", "IDLEGRID_DATA_DIR=" + home + "/data"};
    std::string cmd;
    for (const std::string& e : env) cmd += e + " ";
    int rc = -1;
    testing::RunCommand(cmd + kBin + "/idlegrid-node enroll --server " + server->url() + " --fingerprint " +
                            server->fingerprint() + " --token " + server->first_start().enroll_token + " 2>&1",
                        &rc);
    REQUIRE(rc == 0);
    return env;
  }
  std::unique_ptr<ChildProcess> Run(std::vector<std::string> env, const std::vector<std::string>& args) {
    env.push_back(kBin + "/idlegrid-node");
    env.push_back("run");
    env.push_back("--heartbeat");
    env.push_back("1");
    env.insert(env.end(), args.begin(), args.end());
    auto child = std::make_unique<ChildProcess>(env);
    auto first = child->ReadLine(10000);
    REQUIRE(first.has_value());
    CHECK_THAT(*first, Catch::Contains("serving"));
    return child;
  }
  std::string SubmitTrain(const models::ModelConfig& c) {
    Job job;
    job.kind = JobKind::kTrain;
    job.inputs["image"] = image;
    job.inputs["labels"] = labels;
    job.config = {{"model", models::ConfigToJson(c)}, {"epochs_per_unit", c.epochs}, {"seed", 5}};
    return Must(admin->Submit(job))["job_id"];
  }
  Json Status(const std::string& job) { return Must(admin->JobStatus(job)); }
  // Waits (bounded) until `pred` holds for the job's status.
  template <typename Pred>
  Json WaitFor(const std::string& job, Pred pred, int seconds) {
    const auto until = Clock::now() + std::chrono::seconds(seconds);
    Json s = Status(job);
    while (!pred(s) && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      s = Status(job);
    }
    return s;
  }
};

models::ModelConfig TrainConfig() {
  models::ModelConfig c = testing::TinyConfig("unet2d", 6, 12);
  c.name = "resumable";
  return c;
}

// The weights an uninterrupted run of the same unit gives, by running the worker directly.
std::string ReferenceDigest(Grid& g, const models::ModelConfig& c) {
  WorkUnit u;
  u.unit_id = "reference";
  u.job_id = "reference";
  u.kind = UnitKind::kTrainEpochs;
  u.config = {{"model", models::ConfigToJson(c)}};
  u.inputs["image"] = g.image;
  u.inputs["labels"] = g.labels;
  u.threads = 1;
  u.seed = 5;
  u.epochs = EpochRange{0, c.epochs};
  const std::string d = g.dir / "reference";
  std::filesystem::create_directories(d + "/in");
  std::filesystem::create_directories(d + "/out");
  std::filesystem::copy_file(g.dir / "image.tif", d + "/in/image");
  std::filesystem::copy_file(g.dir / "labels.tif", d + "/in/labels");
  testing::Spit(d + "/unit.json", u.ToJson().dump());
  int rc = -1;
  testing::RunCommand(kBin + "/idlegrid-worker run " + d + "/unit.json --inputs " + d + "/in --outputs " + d +
                          "/out > /dev/null 2>&1",
                      &rc);
  REQUIRE(rc == 0);
  return Must(models::Model::Load(d + "/out/model.pt"))->WeightsDigest();
}

std::string GridDigest(Grid& g, const std::string& job) {
  Must(g.admin->FetchOutput(job, "model", g.dir / (job + ".pt")));
  return Must(models::Model::Load(g.dir / (job + ".pt")))->WeightsDigest();
}

const Json& OnlyUnit(const Json& status) { return status["units"][0]; }

TEST_CASE("kill -9 of a node mid-training: another node resumes, weights bit-identical", "[client][node]") {
  Grid g;
  const models::ModelConfig c = TrainConfig();
  const std::string job = g.SubmitTrain(c);
  auto a = g.Run(g.NewNode(), {});
  // Wait for a checkpoint to reach the server, then kill the node without warning.
  Json s = g.WaitFor(job, [](const Json& j) { return OnlyUnit(j)["epochs_done"].get<int64_t>() >= 2; }, 120);
  REQUIRE(OnlyUnit(s)["epochs_done"].get<int64_t>() >= 2);
  REQUIRE(OnlyUnit(s)["state"] == "leased");
  a->Signal(SIGKILL);
  REQUIRE(a->Wait(5000) == 128 + SIGKILL);
  const int64_t saved = g.Status(job)["units"][0]["epochs_done"];
  // The lease expires; a new node takes the unit from that checkpoint.
  auto b = g.Run(g.NewNode(), {});
  s = g.WaitFor(job, [](const Json& j) { return j["state"] != "running" && j["state"] != "queued"; }, 180);
  REQUIRE(s["state"] == "done");
  CHECK(OnlyUnit(s)["leases"] == 2);
  CHECK(OnlyUnit(s)["failures"] == 1);  // the expiry
  CHECK(saved < c.epochs);
  CHECK(GridDigest(g, job) == ReferenceDigest(g, c));
}

TEST_CASE("SIGTERM to a node: checkpoint uploaded, unit given back, nothing lost", "[client][node]") {
  Grid g;
  const models::ModelConfig c = TrainConfig();
  const std::string job = g.SubmitTrain(c);
  auto a = g.Run(g.NewNode(), {});
  Json s = g.WaitFor(job, [](const Json& j) { return OnlyUnit(j)["epochs_done"].get<int64_t>() >= 1; }, 120);
  REQUIRE(OnlyUnit(s)["state"] == "leased");
  const auto t0 = Clock::now();
  a->Signal(SIGTERM);
  const std::vector<std::string> lines = a->Drain(20000);
  CHECK(a->Wait(5000) == 0);
  CHECK(Clock::now() - t0 < std::chrono::seconds(10));
  REQUIRE_FALSE(lines.empty());
  CHECK_THAT(lines.back(), Catch::Contains("1 given back"));
  s = g.Status(job);
  CHECK(OnlyUnit(s)["state"] == "ready");  // back in the queue at once, not after expiry
  CHECK(OnlyUnit(s)["failures"] == 0);
  auto b = g.Run(g.NewNode(), {});
  s = g.WaitFor(job, [](const Json& j) { return j["state"] == "done"; }, 180);
  REQUIRE(s["state"] == "done");
  CHECK(OnlyUnit(s)["leases"] == 2);
  CHECK(GridDigest(g, job) == ReferenceDigest(g, c));
}

TEST_CASE("user activity suspends the worker within a second, and past the grace it is given back", "[client][node]") {
  Grid g;
  const std::string idle = g.dir / "idle";
  testing::Spit(idle, "idle\n");
  models::ModelConfig c = TrainConfig();
  c.epochs = 40;  // long enough to be running throughout
  const std::string job = g.SubmitTrain(c);
  std::vector<std::string> env = g.NewNode();
  auto a = g.Run(env, {"--policy", "idle", "--idle-minutes", "0", "--idle-file", idle, "--grace", "3"});
  std::string socket;
  for (const std::string& e : env) {
    if (e.rfind("IDLEGRID_CACHE_DIR=", 0) == 0) socket = e.substr(19) + "/node.sock";
  }
  int64_t pid = 0;
  for (int i = 0; i < 600 && pid == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    StatusOr<Json> st = client::QueryNode(socket, "status");
    if (st.ok() && (*st)["state"] == "working") pid = (*st)["worker_pid"];
  }
  REQUIRE(pid > 0);
  auto state_of = [](int64_t p) {
    std::ifstream in("/proc/" + std::to_string(p) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t paren = text.rfind(')');
    return paren == std::string::npos || paren + 2 >= text.size() ? '?' : text[paren + 2];
  };
  const auto active_at = Clock::now();
  testing::Spit(idle, "active\n");
  char state = '?';
  for (int i = 0; i < 200; ++i) {
    state = state_of(pid);
    if (state == 'T') break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(state == 'T');
  CHECK(Clock::now() - active_at < std::chrono::seconds(1));
  CHECK(Must(client::QueryNode(socket, "status"))["state"] == "suspended");
  // The user stays: after the grace the unit goes back to the queue from a checkpoint.
  Json s = g.WaitFor(job, [](const Json& j) { return OnlyUnit(j)["state"] == "ready"; }, 30);
  INFO("unit: " << OnlyUnit(s).dump() << "\nnode: " << Must(client::QueryNode(socket, "status")).dump());
  CHECK(OnlyUnit(s)["state"] == "ready");
  CHECK(OnlyUnit(s)["failures"] == 0);
  CHECK(OnlyUnit(s)["epochs_done"].get<int64_t>() >= 0);
  CHECK(Must(client::QueryNode(socket, "status"))["units_given_back"] == 1);
  a->Signal(SIGTERM);
  CHECK(a->Wait(10000) == 0);
}

TEST_CASE("the status socket pauses, resumes and switches policy, and a stalled client does not hold it", "[client][node]") {
  Grid g;
  std::vector<std::string> env = g.NewNode();
  const std::string socket = env[2].substr(std::string("IDLEGRID_CACHE_DIR=").size()) + "/node.sock";
  const std::string idle = g.dir / "idle";
  testing::Spit(idle, "active\n");
  auto a = g.Run(env, {"--policy", "idle", "--idle-file", idle});
  StatusOr<Json> st = client::QueryNode(socket, "status");
  for (int i = 0; i < 100 && !st.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    st = client::QueryNode(socket, "status");
  }
  REQUIRE(st.ok());
  CHECK((*st)["paused"] == false);
  CHECK((*st)["policy"] == "idle");
  CHECK(Must(client::QueryNode(socket, "pause")) == Json({{"ok", true}, {"paused", true}}));
  Json s = Must(client::QueryNode(socket, "status"));
  for (int i = 0; i < 50 && s["state"] != "paused"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    s = Must(client::QueryNode(socket, "status"));
  }
  CHECK(s["paused"] == true);
  CHECK(s["state"] == "paused");
  CHECK(Must(client::QueryNode(socket, "resume"))["paused"] == false);
  CHECK(Must(client::QueryNode(socket, "policy always"))["policy"] == "always");
  CHECK(Must(client::QueryNode(socket, "status"))["policy"] == "always");
  CHECK(Must(client::QueryNode(socket, "policy idle"))["policy"] == "idle");
  CHECK(Must(client::QueryNode(socket, "status"))["policy"] == "idle");
  CHECK_THAT(Must(client::QueryNode(socket, "reboot"))["error"].get<std::string>(), Catch::Contains("unknown command"));

  // A local client that connects and sends a byte every 300 ms, never a newline: the daemon
  // gives it a second, then answers the next client (QueryNode waits 2 s for its reply).
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof(addr.sun_path) - 1);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    for (int i = 0; i < 20 && !done.load(); ++i) {
      if (::send(fd, "s", 1, MSG_NOSIGNAL) != 1) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the daemon is reading it now
  StatusOr<Json> during = client::QueryNode(socket, "status");
  done = true;
  trickle.join();
  ::close(fd);
  REQUIRE(during.ok());
  CHECK((*during)["paused"] == false);
  a->Signal(SIGTERM);
  CHECK(a->Wait(10000) == 0);
}

TEST_CASE("cancelling a job stops its worker through the heartbeat", "[client][node]") {
  Grid g;
  models::ModelConfig c = TrainConfig();
  c.epochs = 60;
  const std::string job = g.SubmitTrain(c);
  std::vector<std::string> env = g.NewNode();
  auto a = g.Run(env, {});
  const std::string socket = env[2].substr(std::string("IDLEGRID_CACHE_DIR=").size()) + "/node.sock";
  Json s = g.WaitFor(job, [](const Json& j) { return OnlyUnit(j)["state"] == "leased"; }, 60);
  REQUIRE(OnlyUnit(s)["state"] == "leased");
  Must(g.admin->Cancel(job));
  Json st;
  for (int i = 0; i < 100; ++i) {  // heartbeats every second: well within 10 s
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    st = Must(client::QueryNode(socket, "status"));
    if (st["units_given_back"] == 1 && st["worker_pid"] == 0) break;
  }
  CHECK(st["units_given_back"] == 1);
  CHECK(st["worker_pid"] == 0);
  CHECK(g.Status(job)["state"] == "cancelled");
  a->Signal(SIGTERM);
  CHECK(a->Wait(10000) == 0);
}

TEST_CASE("a batch node started with --exit-when-idle leaves when there is no work", "[client][node]") {
  Grid g;
  auto a = g.Run(g.NewNode(), {"--exit-when-idle", "1"});
  CHECK(a->Wait(15000) == 0);
}

TEST_CASE("a unit signed by another key, or an input with the wrong hash, runs nothing", "[client][node]") {
  Grid g;
  const models::ModelConfig c = TrainConfig();
  SECTION("forged signature") {
    std::vector<std::string> env = g.NewNode();
    const std::string identity = env[1].substr(std::string("IDLEGRID_CONFIG_DIR=").size()) + "/node.json";
    Json id = Must(ParseJson(testing::Slurp(identity)));
    id["public_key"] = Must(PrivateKey::Generate()).public_key().ToPem();  // pin someone else's key
    testing::Spit(identity, id.dump());
    const std::string job = g.SubmitTrain(c);
    auto a = g.Run(env, {});
    Json s = g.WaitFor(job, [](const Json& j) { return j["state"] == "failed"; }, 60);
    CHECK(s["state"] == "failed");
    CHECK_THAT(s["error"].get<std::string>(), Catch::Contains("refused") && Catch::Contains("unknown key"));
    const std::string cache = env[2].substr(std::string("IDLEGRID_CACHE_DIR=").size());
    CHECK((!std::filesystem::exists(cache + "/units/blobs") ||
           std::filesystem::is_empty(cache + "/units/blobs")));  // nothing fetched
  }
  SECTION("wrong hash") {
    // The node downloads the server's cut of the image (the labelled slice, computed here the
    // same way: the same slices give the same bytes). Damage it in the server's store once
    // it is cut: the node must notice and run nothing.
    const MaterialsSample& sample = testing::SmallSample();
    const models::DataFingerprint fp = Must(models::ComputeFingerprint(sample.image, &sample.scribbles, {}));
    Must(CopyTiffSlices(g.dir / "image.tif", models::TrainingRegion(c, fp), g.dir / "cut.tif"));
    const std::string cut = Must(Sha256File(g.dir / "cut.tif"));
    const std::string job = g.SubmitTrain(c);
    const std::string path = g.dir / ("server/blobs/objects/" + cut.substr(0, 2) + "/" + cut);
    for (int i = 0; i < 200 && !std::filesystem::exists(path); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    REQUIRE(std::filesystem::exists(path));
    std::filesystem::permissions(path, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
    {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(1000);
      f.put('\x5a');
    }
    std::vector<std::string> env = g.NewNode();
    auto a = g.Run(env, {});
    Json s = g.WaitFor(job, [](const Json& j) { return j["state"] == "failed"; }, 60);
    CHECK(s["state"] == "failed");
    CHECK_THAT(s["error"].get<std::string>(), Catch::Contains("input \"image\""));
    const std::string units = env[2].substr(std::string("IDLEGRID_CACHE_DIR=").size()) + "/units";
    for (const auto& e : std::filesystem::directory_iterator(units)) {
      CHECK_FALSE(std::filesystem::exists(e.path().string() + "/worker.log"));  // no worker ever started
    }
  }
}

TEST_CASE("workers limited to less address space than the volume holds train on it and segment it", "[client][node]") {
  // A 1.38 GiB volume (5632 slices of 512 x 512, uint8) with strokes on one slice, and a node
  // whose workers may map at most 1 GiB (ulimit -v): what a unit reads is its region.
  Grid g;
  const VolumeShape shape{5632, 512, 512, 1};
  const int64_t labelled = 2816;
  {
    auto image = Must(TiffWriter::Open(g.dir / "big.tif", shape, DType::kUInt8));
    TiffWriteOptions deflate;
    deflate.deflate = true;
    auto labels = Must(TiffWriter::Open(g.dir / "big_labels.tif", shape, DType::kUInt8, deflate));
    Volume chunk = Must(Volume::Create({64, 512, 512, 1}, DType::kUInt8));
    Volume none = Must(Volume::Create({1, 512, 512, 1}, DType::kUInt8)), strokes = none;
    for (int64_t y = 0; y < 512; ++y)
      for (int64_t x = 0; x < 512; ++x) {
        const bool bright = (x / 64 + y / 64) % 2 == 0;
        for (int64_t z = 0; z < 64; ++z) chunk.at<uint8_t>(z, y, x) = static_cast<uint8_t>(bright ? 200 : 40);
        if (y % 32 < 3) strokes.at<uint8_t>(0, y, x) = bright ? 2 : 1;
      }
    for (int64_t z = 0; z < shape.z; z += 64) Must(image->Append(chunk));
    for (int64_t z = 0; z < shape.z; ++z) Must(labels->Append(z == labelled ? strokes : none));
    Must(image->Close());
    Must(labels->Close());
  }
  const BlobRef image = Must(g.admin->UploadFile(g.dir / "big.tif"));
  const BlobRef labels = Must(g.admin->UploadFile(g.dir / "big_labels.tif"));
  std::filesystem::remove(g.dir / "big.tif");
  const std::string worker = g.dir / "limited-worker";
  testing::Spit(worker, "#!/bin/sh\nulimit -v 1048576\nexec " + kBin + "/idlegrid-worker \"$@\"\n");
  std::filesystem::permissions(worker, std::filesystem::perms::owner_all);
  auto a = g.Run(g.NewNode(), {"--worker", worker});

  models::ModelConfig c = TrainConfig();
  c.epochs = 1;
  c.steps_per_epoch = 4;
  c.norm = {40, 200, 120, 80};
  c.num_classes = 2;
  c.class_weights = {1.0, 1.0};
  c.class_names = {"dark", "bright"};
  Job train;
  train.kind = JobKind::kTrain;
  train.inputs = {{"image", image}, {"labels", labels}};
  train.config = {{"model", models::ConfigToJson(c)}};
  const std::string trained = Must(g.admin->Submit(train))["job_id"];
  Json s = g.WaitFor(trained, [](const Json& j) { return j["state"] == "done" || j["state"] == "failed"; }, 300);
  INFO(s["error"].get<std::string>());
  REQUIRE(s["state"] == "done");
  Job infer;
  infer.kind = JobKind::kInfer;
  infer.inputs = {{"volume", image}, {"model", Must(BlobRef::FromJson(s["outputs"]["model"]))}};
  infer.config = {{"output", "labels"}, {"z_range", {labelled, labelled + 1}}};
  const std::string segmented = Must(g.admin->Submit(infer))["job_id"];
  Json t = g.WaitFor(segmented, [](const Json& j) { return j["state"] == "done" || j["state"] == "failed"; }, 300);
  REQUIRE(t["state"] == "done");
  for (const Json* job : {&s, &t}) {
    for (const Json& u : (*job)["units"]) {
      CHECK(u["metrics"]["worker_peak_rss_mib"].get<double>() < 1024);
    }
  }
  Must(g.admin->FetchOutput(segmented, "labels", g.dir / "segmented.tif"));
  CHECK(Must(ProbeTiff(g.dir / "segmented.tif")).shape == VolumeShape{1, 512, 512, 1});
  a->Signal(SIGTERM);
  CHECK(a->Wait(10000) == 0);
}

// Slices of `v` rolled `dx` pixels along X (periodic): the sample's content, moved.
Volume RollX(const Volume& v, int64_t dx) {
  Volume out = Must(Volume::Create(v.shape(), v.dtype()));
  const int64_t X = v.shape().x, elem = static_cast<int64_t>(DTypeSize(v.dtype()));
  for (int64_t z = 0; z < v.shape().z; ++z)
    for (int64_t y = 0; y < v.shape().y; ++y)
      for (int64_t x = 0; x < X; ++x) {
        std::memcpy(out.bytes() + v.Index(z, y, (x + dx) % X) * elem, v.bytes() + v.Index(z, y, x) * elem, static_cast<size_t>(elem));
      }
  return out;
}

TEST_CASE("a time series segments through the grid: labels on one time point, a hyperstack out", "[client][node]") {
  // Three time points of the small sample, its content moving 16 px along X between them;
  // strokes painted on the middle time point only.
  Grid g;
  const MaterialsSample& sample = testing::SmallSample();
  const int64_t frames = 3, depth = sample.image.shape().z;
  TiffWriteOptions series;
  series.frames = frames;
  std::vector<Volume> truth;
  {
    VolumeShape shape = sample.image.shape();
    shape.z *= frames;
    auto image = Must(TiffWriter::Open(g.dir / "series.tif", shape, DType::kUInt16, series));
    for (int64_t t = 0; t < frames; ++t) {
      Must(image->Append(RollX(sample.image, 16 * t)));
      truth.push_back(RollX(sample.truth, 16 * t));
    }
    Must(image->Close());
  }
  // The labels as one volume painted on time point 1, placed in the series (what
  // `idlegrid submit --labels-time-point 2` does).
  Must(WriteTiff(g.dir / "labels_t1.tif", RollX(sample.scribbles, 16)));
  Must(PlaceInSeries(g.dir / "labels_t1.tif", frames, 1, g.dir / "series_labels.tif"));
  Job job;
  job.kind = JobKind::kTrain;
  job.inputs = {{"image", Must(g.admin->UploadFile(g.dir / "series.tif"))},
                {"labels", Must(g.admin->UploadFile(g.dir / "series_labels.tif"))}};
  job.config = {{"model", models::ConfigToJson(testing::TinyConfig("unet25d", 4, 60))}, {"infer", "labels"}, {"seed", 3}};
  const std::string id = Must(g.admin->Submit(job))["job_id"];
  auto a = g.Run(g.NewNode(), {});
  auto b = g.Run(g.NewNode(), {});
  Json s = g.WaitFor(id, [](const Json& j) { return j["state"] == "done" || j["state"] == "failed"; }, 300);
  INFO(s.dump());
  REQUIRE(s["state"] == "done");
  // Training read time point 1 alone; every slab lies inside one time point.
  std::set<int64_t> slab_frames;
  for (const Json& u : s["units"]) {
    REQUIRE(u["region"]["frames"] == frames);
    const Json& runs = u["region"]["runs"];
    const int64_t first = runs.front()[0], last = runs.back()[1].get<int64_t>() - 1;
    CHECK(first / depth == last / depth);
    if (u["kind"] == "train_epochs") CHECK(first / depth == 1);
    if (u["kind"] == "infer_slab") slab_frames.insert(first / depth);
  }
  CHECK(slab_frames == std::set<int64_t>{0, 1, 2});
  // The output is a hyperstack of the same time points, each segmented from its own content.
  Must(g.admin->FetchOutput(id, "labels", g.dir / "labels.tif"));
  const TiffInfo out = Must(ProbeTiff(g.dir / "labels.tif"));
  CHECK(out.frames == frames);
  CHECK(out.shape == VolumeShape{frames * depth, 64, 64, 1});
  const Volume labels = Must(ReadTiff(g.dir / "labels.tif"));
  // Dice of pores and inclusions (the matrix is most pixels, moved or not) of time point t's
  // output against each time point's truth: its own is high, the others' are not.
  const int64_t voxels = 64 * 64 * depth;
  auto dice = [&](int64_t t, int64_t other) {
    double sum = 0;
    for (uint8_t c : {2, 3}) {
      double both = 0, p = 0, q = 0;
      for (int64_t i = 0; i < voxels; ++i) {
        const bool pi = labels.data<uint8_t>()[t * voxels + i] == c, qi = truth[static_cast<size_t>(other)].data<uint8_t>()[i] == c;
        both += pi && qi;
        p += pi;
        q += qi;
      }
      sum += p + q > 0 ? 2 * both / (p + q) : 1;
    }
    return sum / 2;
  };
  for (int64_t t = 0; t < frames; ++t) {
    INFO("time point " << t << ": Dice against each time point's truth " << dice(t, 0) << " " << dice(t, 1) << " " << dice(t, 2));
    CHECK(dice(t, t) > 0.25);  // a tiny model, trained seconds
    for (int64_t other = 0; other < frames; ++other) {
      if (other != t) CHECK(dice(t, t) > dice(t, other) + 0.2);
    }
  }
  a->Signal(SIGTERM);
  b->Signal(SIGTERM);
  CHECK(a->Wait(10000) == 0);
  CHECK(b->Wait(10000) == 0);
}

TEST_CASE("HDF5 in and out through the console: a series dataset denoised, fetched as TIFF and as HDF5", "[client][node]") {
  Grid g;
  // The small sample and its mirror image as two time points, as h5py writes them (chunked,
  // gzip, 4D without an axes attribute).
  Must(WriteTiff(g.dir / "sample.tif", testing::SmallSample().image));
  int rc = -1;
  const std::string py = testing::RunCommand(
      "/usr/bin/python3 -c 'import numpy as np, h5py, tifffile\na = tifffile.imread(\"" + g.dir / "sample.tif" +
          "\")\nwith h5py.File(\"" + g.dir / "series.h5" + "\", \"w\") as f:\n"
          "  f.create_dataset(\"entry/raw\", data=np.stack([a, a[:, :, ::-1]]), chunks=(1, 4, 32, 32), compression=\"gzip\")' 2>&1",
      &rc);
  INFO(py);
  REQUIRE(rc == 0);
  // A tiny denoiser trained through the API (what the console would plan takes minutes).
  const models::ModelConfig c = testing::TinyDenoiserConfig(1, 2);
  Job train;
  train.kind = JobKind::kTrain;
  train.inputs["image"] = g.image;
  train.config = {{"model", models::ConfigToJson(c)}};
  const std::string trained = Must(g.admin->Submit(train))["job_id"];
  auto node = g.Run(g.NewNode(), {});
  Json t = g.WaitFor(trained, [](const Json& j) { return j["state"] == "done" || j["state"] == "failed"; }, 120);
  REQUIRE(t["state"] == "done");
  Must(g.admin->FetchOutput(trained, "model", g.dir / "model.pt"));
  testing::Spit(g.dir / "model.json", models::ConfigToJson(c).dump());
  const std::string cli = "/usr/bin/env IDLEGRID_CONFIG_DIR=" + g.dir / "cli" + " IDLEGRID_CACHE_DIR=" + g.dir / "cli-cache" + " " +
                          kBin + "/idlegrid --server " + g.server->url() + " --fingerprint " + g.server->fingerprint() +
                          " --token " + g.server->first_start().admin_token + " ";
  const std::string job = testing::Trim(testing::RunCommand(
      cli + "submit infer --model " + g.dir / "model.pt" + " --volume " + g.dir / "series.h5:/entry/raw" + " --config " +
          g.dir / "model.json" + " 2>" + g.dir / "submit.err",
      &rc));
  const std::string said = testing::Slurp(g.dir / "submit.err");
  INFO(said);
  REQUIRE(rc == 0);
  CHECK_THAT(said, Catch::Contains("read as 2 time points") && Catch::Contains("converting"));
  Json s = g.WaitFor(job, [](const Json& j) { return j["state"] == "done" || j["state"] == "failed"; }, 120);
  INFO(s.dump());
  REQUIRE(s["state"] == "done");
  for (const Json& u : s["units"]) CHECK(u["region"]["frames"] == 2);
  testing::RunCommand(cli + "fetch " + job + " -o " + g.dir / "out.h5:/denoised/volume" + " 2>&1", &rc);
  REQUIRE(rc == 0);
  testing::RunCommand(cli + "fetch " + job + " -o " + g.dir / "out.tif" + " 2>&1", &rc);
  REQUIRE(rc == 0);
  const TiffInfo tif = Must(ProbeTiff(g.dir / "out.tif"));
  CHECK(tif.frames == 2);
  CHECK(tif.shape == VolumeShape{24, 64, 64, 1});
  auto h5 = Must(Hdf5Reader::Open(ParseVolumePath(g.dir / "out.h5:/denoised/volume")));
  CHECK(h5->info().frames == 2);
  CHECK(h5->info().axes == "TZYX");
  CHECK(Must(h5->ReadSlices(0, -1)) == Must(ReadTiff(g.dir / "out.tif")));
  // Nothing is left in the staging folder; a dataset name is needed to write HDF5.
  CHECK(std::filesystem::is_empty(g.dir / "cli-cache/staging"));
  const std::string err = testing::RunCommand(cli + "fetch " + job + " -o " + g.dir / "x.h5" + " 2>&1", &rc);
  CHECK(rc != 0);
  CHECK_THAT(err, Catch::Contains("name the dataset to write"));

  // Labels painted on one time point, as one volume: refused with the way out, then taken
  // with the time point said.
  Must(WriteTiff(g.dir / "scribbles.tif", testing::SmallSample().scribbles));
  const std::string segment = cli + "submit segment --image " + g.dir / "series.h5:/entry/raw" + " --labels " + g.dir / "scribbles.tif";
  const std::string refused = testing::RunCommand(segment + " 2>&1", &rc);
  CHECK(rc != 0);
  CHECK_THAT(refused, Catch::Contains("one volume of 12 slices") && Catch::Contains("--labels-time-point"));
  const std::string placed = testing::Trim(testing::RunCommand(segment + " --labels-time-point 2 2>" + g.dir / "seg.err", &rc));
  INFO(testing::Slurp(g.dir / "seg.err"));
  REQUIRE(rc == 0);
  CHECK_THAT(testing::Slurp(g.dir / "seg.err"), Catch::Contains("time point 2 of 2"));
  // Its training units read time point 2 (index 1) alone: the labels landed there.
  const Json queued = g.WaitFor(placed, [](const Json& j) { return !j["units"].empty() || j["state"] == "failed"; }, 60);
  INFO(queued.dump());
  REQUIRE(queued["state"] != "failed");
  for (const Json& u : queued["units"]) {
    if (u["kind"] != "train_epochs") continue;
    CHECK(u["region"]["runs"].front()[0].get<int64_t>() / 12 == 1);
    CHECK((u["region"]["runs"].back()[1].get<int64_t>() - 1) / 12 == 1);
  }
  testing::RunCommand(cli + "cancel " + placed + " 2>&1", &rc);
  CHECK(rc == 0);
  CHECK(testing::RunCommand(segment + " --labels-time-point 3 2>&1", &rc).find("time point 3 is outside the series' 2") !=
        std::string::npos);
  CHECK(rc != 0);
  CHECK(std::filesystem::is_empty(g.dir / "cli-cache/staging"));
  node->Signal(SIGTERM);
  CHECK(node->Wait(10000) == 0);
}

TEST_CASE("a sweep and its inference run through two nodes", "[client][node]") {
  Grid g;
  Job job;
  job.kind = JobKind::kSweep;
  job.inputs["image"] = g.image;
  job.inputs["labels"] = g.labels;
  Json candidates = Json::array();
  for (const char* arch : {"unet2d", "dilated2d", "unet25d"}) {
    models::ModelConfig c = testing::TinyConfig(arch, 2, 4);
    c.refit_fraction = 0.5;  // the second epoch trains on the validation strokes too
    candidates.push_back(models::ConfigToJson(c));
  }
  // No review here (its 12 slices would be the whole volume): what the units move is checked.
  job.config = {{"candidates", candidates}, {"infer", "labels"}, {"review", false}};
  const std::string id = Must(g.admin->Submit(job))["job_id"];
  std::vector<std::string> env_a = g.NewNode(), env_b = g.NewNode();
  auto a = g.Run(env_a, {});
  auto b = g.Run(env_b, {});
  Json s = g.WaitFor(id, [](const Json& j) { return j["state"] == "done" || j["state"] == "failed"; }, 300);
  REQUIRE(s["state"] == "done");
  CHECK(s["summary"]["ranking"].size() == 3);
  // Each chain's second epoch is a refit: no validation there, so the score is the first
  // epoch's validation Dice.
  for (const Json& r : s["summary"]["ranking"]) CHECK((r["score"].is_number() && r["score"].get<double>() > 0));
  std::set<std::string> nodes;
  for (const Json& u : s["units"]) nodes.insert(u["node"].get<std::string>());
  CHECK(nodes.size() == 2);
  Must(g.admin->FetchOutput(id, "labels", g.dir / "labels.tif"));
  const Volume labels = Must(ReadTiff(g.dir / "labels.tif"));
  CHECK(labels.shape() == testing::SmallSample().image.shape());
  // The nodes that ran slabs show their last result on the status socket (for the tray and
  // the screensaver): a PNG of input and output side by side.
  int previews = 0;
  for (const auto* env : {&env_a, &env_b}) {
    const std::string socket = (*env)[2].substr(std::string("IDLEGRID_CACHE_DIR=").size()) + "/node.sock";
    const Json st = Must(client::QueryNode(socket, "status"));
    const std::string preview = st["preview"];
    if (preview.empty()) continue;
    ++previews;
    CHECK(testing::Slurp(preview).substr(1, 3) == "PNG");
  }
  CHECK(previews >= 1);
  // What the nodes downloaded of the volume is what their units' regions hold (each training
  // unit the labelled slice with its context, each slab its slices), not the volume per unit.
  int64_t downloaded = 0, needed = 0;
  for (const auto* env : {&env_a, &env_b}) {
    const std::string socket = (*env)[2].substr(std::string("IDLEGRID_CACHE_DIR=").size()) + "/node.sock";
    downloaded += Must(client::QueryNode(socket, "status"))["data_bytes_downloaded"].get<int64_t>();
  }
  const int64_t plane = 64 * 64;
  for (const Json& u : s["units"]) {
    REQUIRE(u.contains("region"));
    int64_t slices = 0;
    for (const Json& run : u["region"]["runs"]) slices += run[1].get<int64_t>() - run[0].get<int64_t>();
    CHECK(slices < 12);  // never the whole volume: a crop or a slab
    needed += slices * plane * (u["kind"] == "train_epochs" ? 3 : 2);  // uint16 image (+ uint8 labels)
  }
  CHECK(downloaded > 0);
  CHECK(static_cast<double>(downloaded) <= 1.2 * static_cast<double>(needed));
  a->Signal(SIGTERM);
  b->Signal(SIGTERM);
  CHECK(a->Wait(10000) == 0);
  CHECK(b->Wait(10000) == 0);
}

TEST_CASE("denoise, then segment, as one job: its stages run through a node and show in status", "[client][node]") {
  Grid g;
  // The small sample with strong Gaussian noise (sigma = a quarter of its range).
  const Volume noisy = testing::NoisySmallSample(0.25, 7);
  Must(WriteTiff(g.dir / "noisy.tif", noisy));
  const std::string cli = "/usr/bin/env IDLEGRID_CONFIG_DIR=" + g.dir / "cli" + " " + kBin + "/idlegrid --server " +
                          g.server->url() + " --fingerprint " + g.server->fingerprint() + " --token " +
                          g.server->first_start().admin_token + " ";
  // The console's option, with tiny models (the strategy's take minutes): through the API.
  Job job;
  job.kind = JobKind::kSweep;
  job.inputs = {{"image", Must(g.admin->UploadFile(g.dir / "noisy.tif"))}, {"labels", g.labels}};
  job.config = {{"denoise", "first"}, {"denoiser", models::ConfigToJson(testing::TinyDenoiserConfig(2, 3))},
                {"candidates", Json::array({models::ConfigToJson(testing::TinyConfig("unet2d", 3, 20))})},
                {"infer", "labels"}, {"review", false}};
  const std::string id = Must(g.admin->Submit(job))["job_id"];
  auto node = g.Run(g.NewNode(), {});
  const Json s = g.WaitFor(id, [](const Json& j) { return j["state"] == "done" || j["state"] == "failed"; }, 300);
  INFO(s.dump());
  REQUIRE(s["state"] == "done");
  CHECK(s["stage_names"] == Json::array({"train the denoiser", "denoise", "train", "segment"}));
  int rc = -1;
  const std::string out = testing::RunCommand(cli + "status " + id + " 2>&1", &rc);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("stages: train the denoiser -> denoise -> train -> segment") &&
                      Catch::Contains("denoised first with"));
  // Both volumes come back: the denoised image and its segmentation, each the image's shape.
  testing::RunCommand(cli + "fetch " + id + " --output denoised -o " + g.dir / "denoised.tif 2>&1", &rc);
  REQUIRE(rc == 0);
  testing::RunCommand(cli + "fetch " + id + " -o " + g.dir / "labels.tif 2>&1", &rc);
  REQUIRE(rc == 0);
  const TiffInfo denoised = Must(ProbeTiff(g.dir / "denoised.tif"));
  CHECK(denoised.shape == noisy.shape());
  CHECK(denoised.dtype == DType::kFloat32);
  const Volume labels = Must(ReadTiff(g.dir / "labels.tif"));
  CHECK(labels.shape() == noisy.shape());
  // The candidate trained on the denoised volume: its units' image is a cut of that output.
  for (const Json& u : s["units"]) {
    if (u["chain"] == "c0") CHECK(u["stage"] == 3);
    if (u["chain"] == "d0") CHECK(u["stage"] == 1);
  }
  node->Signal(SIGTERM);
  CHECK(node->Wait(10000) == 0);
}

TEST_CASE("a round's review sends the user to the slices its candidates are unsure of", "[client][node]") {
  Grid g;
  // The small sample with four slices far from the painted one planted: noise over the
  // image's whole range, which nothing painted resembles.
  const MaterialsSample& sample = testing::SmallSample();
  Volume image = sample.image;
  const int64_t depth = image.shape().z, plane = image.shape().y * image.shape().x;
  uint16_t lo = 65535, hi = 0;
  for (int64_t i = 0; i < image.shape().elements(); ++i) {
    lo = std::min(lo, image.data<uint16_t>()[i]);
    hi = std::max(hi, image.data<uint16_t>()[i]);
  }
  const int64_t first = sample.label_slice < depth / 2 ? depth - 4 : 0;
  uint32_t noise = 12345;
  for (int64_t z = first; z < first + 4; ++z) {
    for (int64_t i = 0; i < plane; ++i) {
      noise = noise * 1664525u + 1013904223u;
      image.data<uint16_t>()[z * plane + i] = static_cast<uint16_t>(lo + (noise >> 8) % (hi - lo + 1));
    }
  }
  Must(WriteTiff(g.dir / "planted.tif", image));
  Job job;
  job.kind = JobKind::kSweep;
  job.inputs = {{"image", Must(g.admin->UploadFile(g.dir / "planted.tif"))}, {"labels", g.labels}};
  Json candidates = Json::array();
  for (const char* arch : {"unet2d", "dilated2d"}) candidates.push_back(models::ConfigToJson(testing::TinyConfig(arch, 4, 60)));
  job.config = {{"candidates", candidates}};
  const std::string id = Must(g.admin->Submit(job))["job_id"];
  auto a = g.Run(g.NewNode(), {});
  auto b = g.Run(g.NewNode(), {});
  const Json s = g.WaitFor(id, [](const Json& j) { return j["state"] == "done" || j["state"] == "failed"; }, 300);
  INFO(s.dump());
  REQUIRE(s["state"] == "done");
  CHECK(s["stages"] == 2);  // train, review
  const Json& review = s["summary"]["review"];
  REQUIRE(review["slices"].size() == static_cast<size_t>(depth));  // a small volume: every slice
  REQUIRE(review["where"].size() == static_cast<size_t>(depth));
  for (int i = 0; i < 4; ++i) {
    const int64_t z = review["where"][i];
    CHECK((z >= first && z < first + 4));
  }
  CHECK(review["agreement"].contains("c0"));
  CHECK(review["agreement"].contains("c1"));
  // The per-voxel map: one slice per reviewed slice, brighter where planted.
  Must(g.admin->FetchOutput(id, "uncertainty", g.dir / "uncertainty.tif"));
  const Volume map = Must(ReadTiff(g.dir / "uncertainty.tif"));
  REQUIRE(map.shape() == VolumeShape{depth, image.shape().y, image.shape().x, 1});
  double planted = 0, rest = 0;
  for (int64_t z = 0; z < depth; ++z) {
    double m = 0;
    for (int64_t i = 0; i < plane; ++i) m += map.data<uint8_t>()[z * plane + i];
    (z >= first && z < first + 4 ? planted : rest) += m / static_cast<double>(plane);
  }
  CHECK(planted / 4 > 1.3 * rest / static_cast<double>(depth - 4));
  // The console says where to go.
  int rc = -1;
  const std::string cli = "/usr/bin/env IDLEGRID_CONFIG_DIR=" + g.dir / "cli" + " " + kBin + "/idlegrid --server " +
                          g.server->url() + " --fingerprint " + g.server->fingerprint() + " --token " +
                          g.server->first_start().admin_token + " ";
  const std::string out = testing::RunCommand(cli + "status " + id + " 2>&1", &rc);
  CHECK(rc == 0);
  const int64_t top = review["where"][0];
  CHECK_THAT(out, Catch::Contains("where to correct") && Catch::Contains("slice " + std::to_string(top + 1) + " ") &&
                      Catch::Contains("agreement"));
  a->Signal(SIGTERM);
  b->Signal(SIGTERM);
  CHECK(a->Wait(10000) == 0);
  CHECK(b->Wait(10000) == 0);
}

}  // namespace
}  // namespace idlegrid
