// big_volume_bench: a volume of at least 2 GiB (uint16, scribbles on one slice) through a
// real server process and two node processes, in one run:
//   upload   the volume and its labels, streamed from disk (the transfer part)
//   train    a one-unit training job on it, and the same on a volume 8x smaller with the
//            same labels: the worker's peak RSS must not grow with the volume
//   infer    the trained model over 8 and over 64 slices of it (2 slabs each, on 2 nodes):
//            the worker's peak RSS against its slab's bytes, and for slabs 8x as deep
// and what the nodes downloaded against the bytes of the regions their units needed (the
// design before regions moved the whole volume to every unit: its ratio is printed beside).
// The server's peak RSS (VmHWM) covers upload, planning, cutting and stitching.
//
//   big_volume_bench --bin DIR [--dir D] [--slices 1024] [--side 1024] [--keep]
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "bench_util.h"
#include "child_process.h"
#include "idlegrid/client/node.h"
#include "idlegrid/models/config_json.h"
#include "idlegrid/models/strategy.h"
#include "idlegrid/shared/api_client.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/tiff_io.h"

namespace idlegrid {
namespace {

using bench::Must;
using Clock = std::chrono::steady_clock;
using testing::ChildProcess;

// Child processes to kill if the benchmark stops early (std::exit runs no destructors).
std::vector<pid_t>& Children() {
  static std::vector<pid_t> pids;
  return pids;
}
void KillChildren() {
  for (pid_t pid : Children()) ::kill(pid, SIGKILL);
}

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Two phases with smooth boundaries plus noise: (sin x + sin y + sin z) > 0 is phase 2.
bool Phase(int64_t z, int64_t y, int64_t x) {
  return std::sin(0.027 * x) + std::sin(0.019 * y) + std::sin(0.024 * z) > 0;
}

// Slices [z0, z0 + v.z) of the two-phase image, its content moved `dx` pixels along X, with
// noise from `rng`.
void FillPhases(Volume& v, int64_t z0, int64_t dx, uint32_t& rng) {
  const VolumeShape& s = v.shape();
  uint16_t* p = v.data<uint16_t>();
  for (int64_t z = 0; z < s.z; ++z)
    for (int64_t y = 0; y < s.y; ++y)
      for (int64_t x = 0; x < s.x; ++x) {
        rng = rng * 1664525u + 1013904223u;
        p[(z * s.y + y) * s.x + x] = static_cast<uint16_t>((Phase(z0 + z, y, x + dx) ? 1800 : 1000) + (rng >> 24));
      }
}

// The image, written 16 slices at a time (never whole in memory).
void WriteImage(const std::string& path, VolumeShape shape) {
  auto w = Must(TiffWriter::Open(path, shape, DType::kUInt16), "open image");
  uint32_t rng = 12345;
  for (int64_t z0 = 0; z0 < shape.z; z0 += 16) {
    VolumeShape part = shape;
    part.z = std::min<int64_t>(16, shape.z - z0);
    Volume v = Must(Volume::CreateUninitialized(part, DType::kUInt16), "chunk");
    FillPhases(v, z0, 0, rng);
    Must(w->Append(v), "write image");
  }
  Must(w->Close(), "close image");
}

// A time series: `frames` time points of `shape` (time slowest), the phases drifting along X
// between time points, as an ImageJ hyperstack.
void WriteSeries(const std::string& path, VolumeShape shape, int64_t frames) {
  TiffWriteOptions o;
  o.frames = frames;
  VolumeShape all = shape;
  all.z *= frames;
  auto w = Must(TiffWriter::Open(path, all, DType::kUInt16, o), "open series");
  uint32_t rng = 777;
  for (int64_t t = 0; t < frames; ++t) {
    Volume v = Must(Volume::CreateUninitialized(shape, DType::kUInt16), "time point");
    FillPhases(v, 0, 9 * t, rng);
    Must(w->Append(v), "write series");
  }
  Must(w->Close(), "close series");
}

// Labels: horizontal strokes (3 px) on slice `labelled`, each pixel its phase; zero elsewhere.
void WriteLabels(const std::string& path, VolumeShape shape, int64_t labelled) {
  TiffWriteOptions o;
  o.deflate = true;
  auto w = Must(TiffWriter::Open(path, shape, DType::kUInt8, o), "open labels");
  VolumeShape one = shape;
  one.z = 1;
  Volume empty = Must(Volume::Create(one, DType::kUInt8), "labels slice");
  for (int64_t z = 0; z < shape.z; ++z) {
    if (z != labelled) {
      Must(w->Append(empty), "write labels");
      continue;
    }
    Volume s = Must(Volume::Create(one, DType::kUInt8), "labels slice");
    for (int64_t y0 = shape.y / 8; y0 < shape.y; y0 += shape.y / 5) {
      for (int64_t y = y0; y < y0 + 3; ++y)
        for (int64_t x = shape.x / 20; x < shape.x - shape.x / 20; ++x) {
          s.at<uint8_t>(0, y, x) = Phase(z, y, x) ? 2 : 1;
        }
    }
    Must(w->Append(s), "write labels");
  }
  Must(w->Close(), "close labels");
}

struct ServerProc {
  std::unique_ptr<ChildProcess> child;
  std::string url, fingerprint, admin, enroll;
};

ServerProc StartServer(const std::string& bin, const std::string& data) {
  ServerProc s;
  s.child = std::make_unique<ChildProcess>(std::vector<std::string>{
      bin + "/idlegrid-server", "--data", data, "--listen", "127.0.0.1:0", "--unit-threads", "1", "--min-slabs", "2"});
  for (int i = 0; i < 20; ++i) {
    auto line = s.child->ReadLine(30000);
    if (!line) break;
    const std::string at = "listening on ", fp = "certificate fingerprint: ";
    if (line->find(at) != std::string::npos) s.url = line->substr(line->find(at) + at.size());
    if (line->find(fp) != std::string::npos) s.fingerprint = line->substr(line->find(fp) + fp.size());
    if (line->find("idlegrid-node enroll") != std::string::npos) break;
  }
  if (s.url.empty()) {
    std::fprintf(stderr, "big_volume_bench: the server did not start\n");
    std::exit(1);
  }
  auto trim = [](std::string t) { return t.substr(0, t.find_first_of("\r\n")); };
  s.admin = trim(Must(ReadFile(data + "/admin.token", 4096), "admin token"));
  s.enroll = trim(Must(ReadFile(data + "/enroll.token", 4096), "enroll token"));
  return s;
}

// Peak resident memory of a process, from /proc (VmHWM), in MiB.
double PeakRssMib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

Json WaitDone(ApiClient& admin, const std::string& job, const char* what) {
  Json s;
  for (int i = 0; i < 36000; ++i) {  // bounded: an hour
    s = Must(admin.JobStatus(job), "status");
    if (s["state"] != "running" && s["state"] != "queued") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (s["state"] != "done") {
    std::fprintf(stderr, "big_volume_bench: %s job ended %s: %s\n", what, s["state"].get<std::string>().c_str(),
                 s["error"].get<std::string>().c_str());
    std::exit(1);
  }
  return s;
}

// The largest worker_peak_rss_mib any unit of the job reported.
double WorkerPeak(const Json& status) {
  double peak = 0;
  for (const Json& u : status["units"]) {
    if (u.contains("metrics") && u["metrics"].contains("worker_peak_rss_mib")) {
      peak = std::max(peak, u["metrics"]["worker_peak_rss_mib"].get<double>());
    }
  }
  return peak;
}

// Bytes of the regions the job's units read: image slices (uint16) and, for training, the
// labels' slices (uint8).
int64_t RegionBytes(const Json& status, int64_t plane, bool labels) {
  int64_t bytes = 0;
  for (const Json& u : status["units"]) {
    int64_t slices = 0;
    for (const Json& run : u["region"]["runs"]) slices += run[1].get<int64_t>() - run[0].get<int64_t>();
    bytes += slices * plane * (labels ? 3 : 2);
  }
  return bytes;
}

models::ModelConfig TinyModel() {
  models::ModelConfig c;
  c.name = "bench-unet2d";
  c.architecture = "unet2d";
  c.num_classes = 2;
  c.class_weights = {1.0, 1.0};
  c.base_filters = 8;
  c.depth = 2;
  c.patch_y = c.patch_x = 64;
  c.batch_size = 8;
  c.epochs = 1;
  c.steps_per_epoch = 20;
  c.augment = "flips";
  c.dice_weight = 0;
  c.norm = {1000, 2055, 1527, 400};
  return c;
}

// A small self-supervised denoiser, planned for the generated intensities and cut to a few
// steps (the benchmark measures data movement and memory, not quality).
models::ModelConfig TinyDenoiser(VolumeShape shape) {
  models::DataFingerprint fp;
  fp.shape = shape;
  fp.p005 = 1000;
  fp.p995 = 2055;
  fp.mean = 1527;
  fp.std = 400;
  models::ModelConfig c = models::PlanDenoiser(fp);
  c.base_filters = 8;
  c.depth = 2;
  c.patch_y = c.patch_x = 64;
  c.batch_size = 8;
  c.epochs = 1;
  c.steps_per_epoch = 20;
  return c;
}

// Bytes of volume data the nodes have downloaded so far.
int64_t NodesDownloaded(const std::vector<std::string>& sockets) {
  int64_t bytes = 0;
  for (const std::string& s : sockets) bytes += Must(client::QueryNode(s, "status"), "node status")["data_bytes_downloaded"].get<int64_t>();
  return bytes;
}

std::string Submit(ApiClient& admin, Job job) { return Must(admin.Submit(job), "submit")["job_id"]; }

int Run(int argc, char** argv) {
  CLI::App app{"big_volume_bench"};
  std::string bin, dir = "/tmp/idlegrid-big-volume";
  int64_t slices = 1024, side = 1024, frames = 8, frame_slices = 24, frame_side = 384;
  bool keep = false;
  app.add_option("--bin", bin)->required();
  app.add_option("--dir", dir);
  app.add_option("--slices", slices);
  app.add_option("--side", side);
  app.add_flag("--keep", keep);
  app.add_option("--frames", frames, "time points of the series (a denoise job)");
  app.add_option("--frame-slices", frame_slices);
  app.add_option("--frame-side", frame_side);
  CLI11_PARSE(app, argc, argv);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const VolumeShape big{slices, side, side, 1}, small{slices / 8, side, side, 1};
  const int64_t plane = side * side;
  const auto t_gen = Clock::now();
  WriteImage(dir + "/big.tif", big);
  WriteLabels(dir + "/big_labels.tif", big, big.z / 2);
  WriteImage(dir + "/small.tif", small);
  WriteLabels(dir + "/small_labels.tif", small, small.z / 2);
  const VolumeShape frame{frame_slices, frame_side, frame_side, 1};
  WriteSeries(dir + "/series.tif", frame, frames);
  const double big_gib = static_cast<double>(big.voxels()) * 2 / (1 << 30);
  std::printf("generated %s uint16 (%.2f GiB) and %s in %.1f s\n", big.ToString().c_str(), big_gib,
              small.ToString().c_str(), Since(t_gen));

  const auto t0 = Clock::now();
  std::atexit(KillChildren);
  ServerProc server = StartServer(bin, dir + "/server");
  Children().push_back(server.child->pid());
  HttpClientOptions h;
  h.base_url = server.url;
  h.pinned_cert_sha256 = server.fingerprint;
  h.bearer_token = server.admin;
  h.timeout_ms = 0;  // uploads of gigabytes
  auto admin = Must(ApiClient::Create(h), "client");
  const auto t_up = Clock::now();
  const BlobRef big_image = Must(admin->UploadFile(dir + "/big.tif"), "upload");
  const BlobRef big_labels = Must(admin->UploadFile(dir + "/big_labels.tif"), "upload");
  const double upload_s = Since(t_up);
  const BlobRef small_image = Must(admin->UploadFile(dir + "/small.tif"), "upload");
  const BlobRef small_labels = Must(admin->UploadFile(dir + "/small_labels.tif"), "upload");
  std::printf("uploaded %.2f GiB in %.1f s (%.0f MiB/s)\n", big_gib, upload_s, big_gib * 1024 / upload_s);

  std::vector<std::unique_ptr<ChildProcess>> nodes;
  std::vector<std::string> sockets;
  for (int n = 0; n < 2; ++n) {
    const std::string home = dir + "/node" + std::to_string(n);
    const std::string env = "IDLEGRID_CONFIG_DIR=" + home + "/config IDLEGRID_CACHE_DIR=" + home +
                            "/cache IDLEGRID_DATA_DIR=" + home + "/data";
    const std::string enroll = "env " + env + " " + bin + "/idlegrid-node enroll --server " + server.url +
                               " --fingerprint " + server.fingerprint + " --token " + server.enroll + " >/dev/null";
    if (std::system(enroll.c_str()) != 0) return 1;
    nodes.push_back(std::make_unique<ChildProcess>(std::vector<std::string>{
        "/usr/bin/env", "IDLEGRID_CONFIG_DIR=" + home + "/config", "IDLEGRID_CACHE_DIR=" + home + "/cache",
        "IDLEGRID_DATA_DIR=" + home + "/data", bin + "/idlegrid-node", "run",
        "--threads", "1", "--heartbeat", "1"}));
    sockets.push_back(home + "/cache/node.sock");
    Children().push_back(nodes.back()->pid());
    nodes.back()->ReadLine(10000);
  }

  Job train;
  train.kind = JobKind::kTrain;
  train.config = {{"model", models::ConfigToJson(TinyModel())}};
  train.inputs = {{"image", big_image}, {"labels", big_labels}};
  const auto t_train = Clock::now();
  const Json big_train = WaitDone(*admin, Submit(*admin, train), "train");
  const double train_s = Since(t_train);
  std::printf("trained on the large volume in %.1f s\n", train_s);
  std::fflush(stdout);
  train.inputs = {{"image", small_image}, {"labels", small_labels}};
  const Json small_train = WaitDone(*admin, Submit(*admin, train), "train (small)");

  // Inference over two ranges of the volume, as two slabs each (the server's --min-slabs):
  // slabs of 4 slices, and of 32 (the server's default slab size for 1024 x 1024 slices). A
  // streamed worker's memory is its runtime and a window of slices, not its slab.
  auto infer_range = [&](int64_t depth) {
    Job infer;
    infer.kind = JobKind::kInfer;
    infer.inputs = {{"volume", big_image}, {"model", BlobRef::FromJson(big_train["outputs"]["model"]).value()}};
    infer.config = {{"output", "labels"}, {"z_range", {big.z / 2 - depth / 2, big.z / 2 + depth / 2}}};
    return WaitDone(*admin, Submit(*admin, infer), "infer");
  };
  const auto t_infer = Clock::now();
  const Json inferred_thin = infer_range(8);
  const Json inferred = infer_range(64);
  const double infer_s = Since(t_infer);
  const double seconds = Since(t0);

  // A time series through a denoise job: units per time point, and what they moved.
  const int64_t before_series = NodesDownloaded(sockets);
  const BlobRef series = Must(admin->UploadFile(dir + "/series.tif"), "upload series");
  Job denoise;
  denoise.kind = JobKind::kDenoise;
  denoise.config = {{"model", models::ConfigToJson(TinyDenoiser(frame))}};
  denoise.inputs = {{"image", series}};
  const auto t_series = Clock::now();
  const Json denoised = WaitDone(*admin, Submit(*admin, denoise), "denoise series");
  const double series_s = Since(t_series);
  const int64_t series_downloaded = NodesDownloaded(sockets) - before_series;
  const int64_t frame_plane = frame_side * frame_side;
  int64_t series_slabs = 0;
  double series_slab_mib = 0;
  for (const Json& u : denoised["units"]) {
    if (u["kind"] != "infer_slab") continue;
    ++series_slabs;
    series_slab_mib += static_cast<double>(u["region"]["runs"][0][1].get<int64_t>() - u["region"]["runs"][0][0].get<int64_t>()) *
                       static_cast<double>(frame_plane) * 2 / (1 << 20);
  }
  series_slab_mib /= static_cast<double>(std::max<int64_t>(series_slabs, 1));
  const double series_rss = WorkerPeak(denoised);
  std::printf("series: %lld time points of %s denoised in %.1f s, %lld slabs of %.1f MiB; nodes downloaded %.1f MiB "
              "for regions of %.1f MiB; worker peak RSS %.0f MiB\n",
              static_cast<long long>(frames), frame.ToString().c_str(), series_s, static_cast<long long>(series_slabs),
              series_slab_mib, static_cast<double>(series_downloaded) / (1 << 20),
              static_cast<double>(RegionBytes(denoised, frame_plane, false)) / (1 << 20), series_rss);

  const int64_t downloaded = before_series;
  int64_t units_per_node[2] = {0, 0};
  for (size_t n = 0; n < sockets.size(); ++n) {
    units_per_node[n] = Must(client::QueryNode(sockets[n], "status"), "node status")["units_done"].get<int64_t>();
  }
  const int64_t needed = RegionBytes(big_train, plane, true) + RegionBytes(small_train, plane, true) +
                         RegionBytes(inferred_thin, plane, false) + RegionBytes(inferred, plane, false);
  // Before regions, every training unit fetched the whole image and labels files, and every
  // node that ran slabs the whole volume.
  const int64_t slab_nodes = std::min<int64_t>(2, static_cast<int64_t>(inferred["units"].size()));
  const int64_t old_design = big_image.size + big_labels.size + small_image.size + small_labels.size +
                             2 * slab_nodes * big_image.size;
  const double server_rss = PeakRssMib(server.child->pid());
  const double train_rss = WorkerPeak(big_train), train_rss_small = WorkerPeak(small_train);
  const double infer_rss = WorkerPeak(inferred), infer_rss_thin = WorkerPeak(inferred_thin);
  auto slab_mib_of = [&](const Json& job) {
    return static_cast<double>(RegionBytes(job, plane, false)) / static_cast<double>(job["units"].size()) / (1 << 20);
  };
  const double slab_mib = slab_mib_of(inferred), thin_slab_mib = slab_mib_of(inferred_thin);
  std::printf("train: %.1f s; worker peak RSS %.0f MiB (%.2f GiB volume) vs %.0f MiB (%.2f GiB volume)\n", train_s,
              train_rss, big_gib, train_rss_small, big_gib / 8);
  std::printf("infer: %.1f s; %zu slabs of %.1f MiB: worker peak RSS %.0f MiB; %zu slabs of %.1f MiB: %.0f MiB\n",
              infer_s, inferred["units"].size(), slab_mib, infer_rss, inferred_thin["units"].size(), thin_slab_mib,
              infer_rss_thin);
  std::printf("nodes downloaded %.1f MiB of volume data for regions of %.1f MiB (units per node %lld / %lld); "
              "whole-volume units would have moved %.1f MiB\n",
              static_cast<double>(downloaded) / (1 << 20), static_cast<double>(needed) / (1 << 20),
              static_cast<long long>(units_per_node[0]), static_cast<long long>(units_per_node[1]),
              static_cast<double>(old_design) / (1 << 20));
  std::printf("server peak RSS %.0f MiB\n", server_rss);
  for (auto& n : nodes) n->Signal(SIGTERM);
  for (auto& n : nodes) n->Wait(30000);
  server.child->Signal(SIGTERM);
  server.child->Wait(30000);
  Children().clear();
  if (!keep) std::filesystem::remove_all(dir);
  std::printf("RESULT volume_gib=%.2f transfer_ratio=%.3f whole_volume_transfer_ratio=%.1f train_worker_peak_rss_mib=%.0f "
              "train_worker_peak_rss_small_mib=%.0f train_rss_ratio=%.3f infer_worker_peak_rss_mib=%.0f "
              "infer_rss_per_slab_bytes=%.2f infer_rss_ratio_8x_slab=%.3f server_peak_rss_mib=%.0f seconds=%.1f transfer_seconds=%.1f "
              "series_frames=%lld series_slabs=%lld series_transfer_ratio=%.3f series_worker_peak_rss_mib=%.0f "
              "series_seconds=%.1f\n",
              big_gib, static_cast<double>(downloaded) / static_cast<double>(needed),
              static_cast<double>(old_design) / static_cast<double>(needed), train_rss, train_rss_small,
              train_rss / train_rss_small, infer_rss, infer_rss / slab_mib, infer_rss / infer_rss_thin, server_rss, seconds, upload_s,
              static_cast<long long>(frames), static_cast<long long>(series_slabs),
              static_cast<double>(series_downloaded) / static_cast<double>(RegionBytes(denoised, frame_plane, false)),
              series_rss, series_s);
  return 0;
}

}  // namespace
}  // namespace idlegrid

int main(int argc, char** argv) { return idlegrid::Run(argc, argv); }
