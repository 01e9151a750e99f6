// grid_inference_bench: what the grid costs and gives for inference. The same model and
// volume, in one run:
//   direct   one idlegrid-worker process segments the whole volume (one slab, T threads)
//   1 node   through the work server: slabs with halos, one node of T threads, stitched
//   2 nodes  the same with two nodes of T threads each
// Ratios: grid1_vs_direct = direct time / 1-node time (goal >= 0.95) and
// two_nodes_speedup = 1-node time / 2-node time (goal >= 1.9 with enough cores).
//
//   grid_inference_bench --bin DIR [--threads 1] [--shape 48x256x256]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <CLI/CLI.hpp>

#include "idlegrid/client/local_grid.h"
#include "idlegrid/models/config_json.h"
#include "idlegrid/models/strategy.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/sample_volume.h"
#include "idlegrid/shared/tiff_io.h"
#include "bench_util.h"

namespace idlegrid {
namespace {

using Clock = std::chrono::steady_clock;

using bench::Must;

// Runs idlegrid-worker on a unit in `dir` (unit.json, in/, out/); returns seconds.
double RunWorker(const std::string& bin, const std::string& dir) {
  const auto t0 = Clock::now();
  const std::string cmd = bin + "/idlegrid-worker run " + dir + "/unit.json --inputs " + dir + "/in --outputs " +
                          dir + "/out > " + dir + "/events.jsonl 2> " + dir + "/worker.log";
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "grid_inference_bench: the worker failed; see %s/worker.log\n", dir.c_str());
    std::exit(1);
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void Link(const std::string& from, const std::string& to) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(to).parent_path(), ec);
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) {
    std::fprintf(stderr, "grid_inference_bench: copy %s: %s\n", from.c_str(), ec.message().c_str());
    std::exit(1);
  }
}

// Seconds from submission to the stitched output, with `nodes` nodes of `threads` each.
double ThroughGrid(const std::string& dir, const std::string& bin, int nodes, int64_t threads,
                   const std::string& volume_path, const std::string& model_path, const Json& config,
                   int64_t slabs_voxels) {
  server::ServerOptions o;
  o.queue.unit_threads = threads;
  o.queue.slab_target_voxels = slabs_voxels;
  auto grid = Must(client::LocalGrid::Start(dir, bin, o), "grid");
  Job job;
  job.kind = JobKind::kInfer;
  job.inputs["model"] = Must(grid->admin().UploadFile(model_path), "upload model");
  job.inputs["volume"] = Must(grid->admin().UploadFile(volume_path), "upload volume");
  job.config = {{"model", config}, {"output", "labels"}};
  const auto t0 = Clock::now();
  const std::string id = Must(grid->admin().Submit(job), "submit")["job_id"];
  for (int n = 0; n < nodes; ++n) Must(grid->AddNode(threads).status(), "node");
  Json s;
  for (int i = 0; i < 36000; ++i) {  // bounded: an hour
    s = Must(grid->admin().JobStatus(id), "status");
    if (s["state"] != "running" && s["state"] != "queued") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (s["state"] != "done") {
    std::fprintf(stderr, "grid_inference_bench: the job ended %s: %s\n", s["state"].get<std::string>().c_str(),
                 s["error"].get<std::string>().c_str());
    std::exit(1);
  }
  Must(grid->admin().FetchOutput(id, "labels", dir + "-labels.tif"), "fetch");
  std::printf("  %d node(s): %zu slabs in %.1f s\n", nodes, s["units"].size(), seconds);
  return seconds;
}

int Main(int argc, char** argv) {
  CLI::App app{"grid inference benchmark"};
  std::string bin, shape_text = "48x256x256";
  int64_t threads = 1;
  app.add_option("--bin", bin, "folder with idlegrid-worker and idlegrid-node")->required();
  app.add_option("--threads", threads, "threads per node (and for the direct run)");
  app.add_option("--shape", shape_text, "volume ZxYxX");
  CLI11_PARSE(app, argc, argv);
  bin = std::filesystem::absolute(bin).string();
  VolumeShape shape{1, 1, 1, 1};
  if (std::sscanf(shape_text.c_str(), "%ldx%ldx%ld", &shape.z, &shape.y, &shape.x) != 3) return 2;

  char tmpl[] = "/tmp/idlegrid-gridbench.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return 1;
  const std::string dir = tmpl;
  SampleOptions so;
  so.shape = shape;
  so.labelled_pixels = 20000;
  MaterialsSample sample = Must(GenerateMaterialsSample(so), "sample");
  Must(WriteTiff(dir + "/volume.tif", sample.image), "tiff");
  Must(WriteTiff(dir + "/labels.tif", sample.scribbles), "tiff");

  // A model to apply: the strategy's 2D U-Net, trained briefly (its quality does not matter).
  models::Resources r;
  r.threads = threads;
  models::DataFingerprint fp = Must(models::ComputeFingerprint(sample.image, &sample.scribbles, r), "fingerprint");
  models::ModelConfig config;
  for (const models::ModelConfig& c : models::PlanCandidates(fp)) {
    if (c.architecture == "unet2d") config = c;
  }
  config.epochs = 1;
  config.steps_per_epoch = 5;
  const Json config_json = models::ConfigToJson(config);
  {
    WorkUnit u;
    u.unit_id = "train";
    u.job_id = "bench";
    u.kind = UnitKind::kTrainEpochs;
    u.config = {{"model", config_json}};
    u.threads = threads;
    u.epochs = EpochRange{0, 1};
    u.inputs["image"] = BlobRef{std::string(64, '0'), 1, ""};
    u.inputs["labels"] = BlobRef{std::string(64, '0'), 1, ""};
    Must(MakeDirs(dir + "/train/out"), "dir");
    Must(WriteFileAtomic(dir + "/train/unit.json", u.ToJson().dump()), "unit");
    Link(dir + "/volume.tif", dir + "/train/in/image");
    Link(dir + "/labels.tif", dir + "/train/in/labels");
    RunWorker(bin, dir + "/train");
  }
  const std::string model = dir + "/train/out/model.pt";
  std::printf("volume %s, model %s, %lld thread(s) per process\n", sample.image.shape().ToString().c_str(),
              config.name.c_str(), static_cast<long long>(threads));

  // (a) direct: one process, the whole volume as one slab.
  double direct;
  {
    WorkUnit u;
    u.unit_id = "direct";
    u.job_id = "bench";
    u.kind = UnitKind::kInferSlab;
    u.config = {{"output", "labels"}};
    u.threads = threads;
    u.slab = SlabRange{0, shape.z, 0, 0};
    u.inputs["model"] = BlobRef{std::string(64, '0'), 1, ""};
    u.inputs["volume"] = BlobRef{std::string(64, '0'), 1, ""};
    Must(MakeDirs(dir + "/direct/out"), "dir");
    Must(WriteFileAtomic(dir + "/direct/unit.json", u.ToJson().dump()), "unit");
    Link(model, dir + "/direct/in/model");
    Link(dir + "/volume.tif", dir + "/direct/in/volume");
    direct = RunWorker(bin, dir + "/direct");
  }
  std::printf("  direct: %.1f s\n", direct);
  // The server's own slab rule (at least min_slabs slabs for a volume this small).
  const int64_t slab_voxels = server::QueueOptions().slab_target_voxels;
  const double one = ThroughGrid(dir + "/grid1", bin, 1, threads, dir + "/volume.tif", model, config_json, slab_voxels);
  const double two = ThroughGrid(dir + "/grid2", bin, 2, threads, dir + "/volume.tif", model, config_json, slab_voxels);
  // All three must agree voxel for voxel: the grid's slabs stitch to the direct result.
  const Volume a = Must(ReadTiff(dir + "/direct/out/labels.tif"), "direct labels");
  const Volume b = Must(ReadTiff(dir + "/grid1-labels.tif"), "grid labels");
  const Volume c = Must(ReadTiff(dir + "/grid2-labels.tif"), "grid labels");
  const bool same = a.shape() == b.shape() && a.shape() == c.shape() &&
                    std::memcmp(a.bytes(), b.bytes(), a.size_bytes()) == 0 &&
                    std::memcmp(a.bytes(), c.bytes(), a.size_bytes()) == 0;
  std::printf("  stitched grid labels identical to the direct run: %s\n", same ? "yes" : "NO");
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::printf("RESULT grid1_vs_direct=%.3f two_nodes_speedup=%.3f direct_s=%.1f one_node_s=%.1f two_nodes_s=%.1f "
              "identical=%d threads=%lld\n",
              direct / one, one / two, direct, one, two, same ? 1 : 0, static_cast<long long>(threads));
  return same ? 0 : 1;
}

}  // namespace
}  // namespace idlegrid

int main(int argc, char** argv) { return idlegrid::Main(argc, argv); }
