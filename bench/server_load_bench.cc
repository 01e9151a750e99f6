// server_load_bench: how many lease -> heartbeat -> complete cycles a real idlegrid-server
// sustains for N node processes on loopback (HTTPS, keep-alive), and their latency.
//
//   server_load_bench --server-bin PATH [--nodes 8] [--seconds 10]
//
// The baseline, measured in the same run with the same processes and connections: plain
// HTTPS round trips (GET /api/v1/health). A cycle is three requests, so
//   queue_efficiency = 3 * cycles/s / round trips/s
// says how much of the raw HTTPS capacity survives the queue's SQLite transactions,
// signing and authorization. Goal: >= 2,000 cycles/s on 2 cores.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <signal.h>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "idlegrid/models/config_json.h"
#include "idlegrid/server/queue.h"
#include "idlegrid/shared/api_client.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/tiff_io.h"
#include "bench_util.h"

namespace idlegrid {
namespace {

using Clock = std::chrono::steady_clock;

using bench::Must;

NodeInfo Info() {
  NodeInfo n;
  n.hostname = "bench";
  n.os = "Linux";
  n.version = "bench";
  n.cores = 64;
  n.ram_bytes = int64_t{64} << 30;
  return n;
}

std::unique_ptr<ApiClient> Client(const std::string& url, const std::string& fp, const std::string& token) {
  HttpClientOptions o;
  o.base_url = url;
  o.pinned_cert_sha256 = fp;
  o.bearer_token = token;
  o.max_attempts = 1;
  return Must(ApiClient::Create(o), "client");
}

struct Sample {
  int64_t ops = 0;
  std::vector<double> latency_ms;
};

// One node process: `mode` "cycle" or "health" until `seconds` pass; results to `fd`.
int NodeProcess(const std::string& mode, const std::string& url, const std::string& fp,
                const std::string& enroll, const BlobRef& output, double seconds, int fd) {
  auto anon = Client(url, fp, "");
  Enrollment e = Must(anon->Enroll(enroll, Info()), "enroll");
  auto c = Client(url, fp, e.node_id + ":" + e.secret);
  if (mode != "health") anon.reset();  // one connection per node, as a real node keeps
  Sample s;
  const auto until = Clock::now() + std::chrono::duration<double>(seconds);
  for (int64_t i = 0; i < 100000000 && Clock::now() < until; ++i) {
    const auto t0 = Clock::now();
    if (mode == "health") {
      Must(anon->Health(), "health");
    } else {
      std::optional<std::string> text = Must(c->Lease(Info()), "lease");
      if (!text) break;
      SignedUnit env = Must(SignedUnit::FromJson(Must(ParseJson(*text), "envelope json")), "envelope");
      Heartbeat hb;
      hb.lease_id = env.lease_id;
      hb.node_id = e.node_id;
      hb.progress = 0.5;
      Must(c->Beat(hb), "heartbeat");
      Result r;
      r.lease_id = env.lease_id;
      r.unit_id = env.unit.unit_id;
      r.node_id = e.node_id;
      r.outputs["labels"] = output;
      Must(c->Complete(r), "complete");
    }
    s.latency_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    ++s.ops;
  }
  std::string out = std::to_string(s.ops);
  for (double l : s.latency_ms) out += " " + std::to_string(l);
  out += "\n";
  for (size_t off = 0; off < out.size();) {
    ssize_t n = ::write(fd, out.data() + off, out.size() - off);
    if (n <= 0) return 1;
    off += static_cast<size_t>(n);
  }
  return 0;
}

// Runs `nodes` processes of `mode` for `seconds`; returns ops/s and sorted latencies.
std::pair<double, std::vector<double>> RunPhase(int nodes, const std::string& mode, const std::string& url,
                                                const std::string& fp, const std::string& enroll,
                                                const BlobRef& output, double seconds) {
  std::vector<std::pair<pid_t, int>> children;
  for (int n = 0; n < nodes; ++n) {
    int fds[2];
    if (::pipe(fds) != 0) std::exit(1);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      ::_exit(NodeProcess(mode, url, fp, enroll, output, seconds, fds[1]));
    }
    ::close(fds[1]);
    children.emplace_back(pid, fds[0]);
  }
  int64_t ops = 0;
  std::vector<double> latencies;
  for (auto [pid, fd] : children) {
    std::string text;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
    ::close(fd);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "server_load_bench: a %s node failed\n", mode.c_str());
      std::exit(1);
    }
    std::istringstream in(text);
    int64_t k = 0;
    in >> k;
    ops += k;
    double l;
    while (in >> l) latencies.push_back(l);
  }
  std::sort(latencies.begin(), latencies.end());
  return {static_cast<double>(ops) / seconds, latencies};
}

double Percentile(const std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// The same cycles against the queue object directly (no HTTP, no TLS, one thread): what
// the SQLite transactions, signing and JSON cost on their own.
double InProcessCycles(const std::string& dir, const Json& model_config, double seconds) {
  auto blobs = Must(BlobStore::Open(dir + "/inproc-blobs"), "blobs");
  server::QueueOptions qo;
  qo.slab_target_voxels = 1;
  auto q = Must(server::Queue::Open(dir + "/inproc.db", blobs.get(), Must(PrivateKey::Generate(), "key"), qo), "queue");
  Volume v = Must(Volume::Create({16384, 1, 1, 1}, DType::kUInt8), "volume");
  Must(WriteTiff(dir + "/inproc.tif", v), "tiff");
  Job job;
  job.kind = JobKind::kInfer;
  job.inputs["model"] = Must(blobs->Put("model"), "put");
  job.inputs["volume"] = Must(blobs->PutFile(dir + "/inproc.tif"), "put");
  job.config = {{"model", model_config}};
  Must(q->Submit(job), "submit");
  const BlobRef output = Must(blobs->Put("output"), "put");
  auto creds = Must(q->Enroll(Must(q->CreateToken(server::TokenKind::kEnroll, "b"), "token"), Info()), "enroll");
  int64_t cycles = 0;
  const auto t0 = Clock::now();
  const auto until = t0 + std::chrono::duration<double>(seconds);
  while (Clock::now() < until && cycles < 16383) {
    Must(q->AuthenticateNode(creds.bearer()), "auth");
    std::optional<SignedUnit> env = Must(q->Lease(creds.node_id, Info()), "lease");
    if (!env) break;
    Heartbeat hb;
    hb.lease_id = env->lease_id;
    hb.node_id = creds.node_id;
    Must(q->AuthenticateNode(creds.bearer()), "auth");
    Must(q->Beat(creds.node_id, hb), "beat");
    Result r;
    r.lease_id = env->lease_id;
    r.unit_id = env->unit.unit_id;
    r.node_id = creds.node_id;
    r.outputs["labels"] = output;
    Must(q->AuthenticateNode(creds.bearer()), "auth");
    Must(q->Complete(creds.node_id, r), "complete");
    ++cycles;
  }
  return static_cast<double>(cycles) / std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

int Main(int argc, char** argv) {
  CLI::App app{"work server load benchmark"};
  std::string server_bin;
  int nodes = 8;
  double seconds = 10;
  app.add_option("--server-bin", server_bin)->required();
  app.add_option("--nodes", nodes)->check(CLI::Range(1, 256));
  app.add_option("--seconds", seconds)->check(CLI::Range(1.0, 3600.0));
  CLI11_PARSE(app, argc, argv);

  char tmpl[] = "/tmp/idlegrid-load.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return 1;
  const std::string dir = tmpl;
  // The server, as a process of its own, on a free port.
  int out[2];
  if (::pipe(out) != 0) return 1;
  pid_t server = ::fork();
  if (server == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::execl(server_bin.c_str(), server_bin.c_str(), "--data", (dir + "/data").c_str(), "--listen", "127.0.0.1:0",
            "--slab-voxels", "1", "--threads", std::to_string(std::max(16, 2 * nodes + 4)).c_str(), nullptr);
    ::_exit(127);
  }
  ::close(out[1]);
  std::string banner, url, fp;
  char ch;
  while (::read(out[0], &ch, 1) == 1) {
    banner.push_back(ch);
    if (banner.find("idlegrid-node enroll") != std::string::npos) break;
  }
  auto field = [&](const std::string& key) {
    const size_t at = banner.find(key);
    if (at == std::string::npos) return std::string();
    const size_t end = banner.find('\n', at);
    return banner.substr(at + key.size(), end - at - key.size());
  };
  url = field("listening on ");
  fp = field("certificate fingerprint: ");
  if (url.empty() || fp.empty()) {
    std::fprintf(stderr, "server_load_bench: the server did not start:\n%s\n", banner.c_str());
    return 1;
  }
  const std::string admin = Trim(Must(ReadFile(dir + "/data/admin.token", 1024), "admin token"));
  const std::string enroll = Trim(Must(ReadFile(dir + "/data/enroll.token", 1024), "enroll token"));
  auto api = Client(url, fp, admin);

  // Tiny units: one-slice slabs of long 1x1 volumes, more than the run can finish.
  const auto setup = Clock::now();
  const int64_t per_job = 16384;
  const int jobs = static_cast<int>(std::ceil(5000.0 * seconds / per_job)) + 1;
  Volume v = Must(Volume::Create({per_job, 1, 1, 1}, DType::kUInt8), "volume");
  Must(WriteTiff(dir + "/volume.tif", v), "volume tiff");
  const BlobRef model = Must(api->UploadBytes("bench model"), "upload");
  const BlobRef volume = Must(api->UploadFile(dir + "/volume.tif"), "upload");
  const BlobRef output = Must(api->UploadBytes("slab output"), "upload");
  models::ModelConfig c;
  c.name = "bench";
  c.num_classes = 2;
  c.class_weights = {1.0, 1.0};
  c.class_names = {"a", "b"};
  c.epochs = 1;
  const Json config = models::ConfigToJson(c);
  for (int j = 0; j < jobs; ++j) {
    Job job;
    job.kind = JobKind::kInfer;
    job.inputs["model"] = model;
    job.inputs["volume"] = volume;
    job.config = {{"model", config}};
    Must(api->Submit(job), "submit");
  }
  std::printf("setup took %.1f s\n", std::chrono::duration<double>(Clock::now() - setup).count());
  std::printf("server %s, %d node processes, %d jobs of %lld units, %.0f s per phase\n", url.c_str(), nodes, jobs,
              static_cast<long long>(per_job), seconds);

  const double inproc = InProcessCycles(dir, config, std::min(5.0, seconds));
  std::printf("queue alone (no HTTP, one thread): %.0f cycles/s\n", inproc);
  auto [health_rate, health_lat] = RunPhase(nodes, "health", url, fp, enroll, output, seconds);
  std::printf("baseline: %.0f HTTPS round trips/s, p50 %.2f ms, p99 %.2f ms\n", health_rate,
              Percentile(health_lat, 0.5), Percentile(health_lat, 0.99));
  auto [cycle_rate, cycle_lat] = RunPhase(nodes, "cycle", url, fp, enroll, output, seconds);
  std::printf("queue:    %.0f lease-heartbeat-complete cycles/s, p50 %.2f ms, p99 %.2f ms per cycle\n",
              cycle_rate, Percentile(cycle_lat, 0.5), Percentile(cycle_lat, 0.99));
  const Json stats = Must(api->Stats(), "stats");
  std::printf("units done %lld, server integrity: leases %lld\n",
              static_cast<long long>(stats["units"].value("done", int64_t{0})),
              static_cast<long long>(stats["leases_total"].get<int64_t>()));
  ::kill(server, SIGTERM);
  int status = 0;
  ::waitpid(server, &status, 0);
  std::filesystem::remove_all(dir);
  std::printf("RESULT cycles_per_s=%.0f p50_ms=%.2f p99_ms=%.2f baseline_rtt_per_s=%.0f queue_efficiency=%.2f queue_alone_cycles_per_s=%.0f nodes=%d\n",
              cycle_rate, Percentile(cycle_lat, 0.5), Percentile(cycle_lat, 0.99), health_rate,
              3 * cycle_rate / std::max(1.0, health_rate), inproc, nodes);
  return 0;
}

}  // namespace
}  // namespace idlegrid

int main(int argc, char** argv) { return idlegrid::Main(argc, argv); }
