// idlegrid-demo: the main job, end to end, with the real pieces.
//   1. generates the bundled sample (a 3-phase materials volume with blur, noise, exact
//      ground truth and ~50,000 pixels painted on one slice, as the wizard would);
//   2. starts an embedded work server on 127.0.0.1 (temporary data dir) and enrolls two local
//      nodes, each a real `idlegrid-node` process that runs `idlegrid-worker`;
//   3. submits a sweep of the strategy's candidates (no parameters) followed by inference
//      with the best one, and shows progress while the nodes work;
//   4. fetches the stitched label stack, scores it against the ground truth and writes
//      labels.tif, preview.png (image | prediction | truth on the painted slice) and
//      summary.json (validation Dice per candidate, whole-volume Dice, time per stage, units
//      and nodes used).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>

#include "idlegrid/client/local_grid.h"
#include "idlegrid/server/server.h"
#include "idlegrid/shared/api_client.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/png.h"
#include "idlegrid/shared/sample_volume.h"
#include "idlegrid/shared/tiff_io.h"

namespace idlegrid {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

class Demo {
 public:
  Demo(std::string out, std::string bin) : out_(std::move(out)), bin_(std::move(bin)) {}
  int Run();

 private:
  Status Sample();
  Status StartGrid();
  Status Sweep();
  Status Score();

  std::string out_, bin_;
  MaterialsSample sample_;
  std::unique_ptr<client::LocalGrid> grid_;
  ApiClient* api_ = nullptr;
  std::string job_id_;
  Json summary_ = Json::object();
};

Status Demo::Sample() {
  const auto t0 = Clock::now();
  std::printf("[1/4] generating the bundled sample\n");
  SampleOptions o;  // 48 x 160 x 160, grains, pores and inclusions; 50,000 painted pixels
  IDLEGRID_ASSIGN_OR_RETURN(sample_, GenerateMaterialsSample(o));
  IDLEGRID_RETURN_IF_ERROR(WriteTiff(out_ + "/image.tif", sample_.image));
  IDLEGRID_RETURN_IF_ERROR(WriteTiff(out_ + "/scribbles.tif", sample_.scribbles));
  IDLEGRID_RETURN_IF_ERROR(WriteTiff(out_ + "/truth.tif", sample_.truth));
  int64_t painted = 0;
  for (int64_t i = 0; i < sample_.scribbles.shape().elements(); ++i) painted += sample_.scribbles.data<uint8_t>()[i] != 0;
  std::printf("      %s uint16 volume; %lld pixels painted on slice %lld\n", sample_.image.shape().ToString().c_str(),
              static_cast<long long>(painted), static_cast<long long>(sample_.label_slice));
  summary_["sample"] = {{"shape", sample_.image.shape().ToString()}, {"painted_pixels", painted},
                        {"painted_slice", sample_.label_slice}};
  summary_["seconds"]["sample"] = Since(t0);
  return Status::Ok();
}

Status Demo::StartGrid() {
  std::printf("[2/4] starting a work server on 127.0.0.1 and two local nodes\n");
  server::ServerOptions o;
  o.queue.unit_threads = 1;           // two single-thread nodes share the two cores
  o.queue.unit_target_seconds = 90;   // chains of a few units, so checkpoints travel
  o.queue.lease_seconds = 60;
  IDLEGRID_ASSIGN_OR_RETURN(grid_, client::LocalGrid::Start(out_ + "/grid", bin_, o));
  std::printf("      server %s (certificate %s...)\n", grid_->server().url().c_str(),
              grid_->server().fingerprint().substr(0, 16).c_str());
  for (int n = 1; n <= 2; ++n) {
    IDLEGRID_ASSIGN_OR_RETURN(std::string id, grid_->AddNode(1, {"--heartbeat", "5"}));
    std::printf("      node %d: %s (log %s/grid/node%d/node.log)\n", n, id.c_str(), out_.c_str(), n);
  }
  api_ = &grid_->admin();
  return Status::Ok();
}

Status Demo::Sweep() {
  const auto t0 = Clock::now();
  std::printf("[3/4] submitting a sweep of candidate models (no parameters), then inference with the best\n");
  Job job;
  job.kind = JobKind::kSweep;
  job.name = "demo segmentation";
  IDLEGRID_ASSIGN_OR_RETURN(job.inputs["image"], api_->UploadFile(out_ + "/image.tif"));
  IDLEGRID_ASSIGN_OR_RETURN(job.inputs["labels"], api_->UploadFile(out_ + "/scribbles.tif"));
  job.config = {{"infer", "labels"}};
  IDLEGRID_ASSIGN_OR_RETURN(Json submitted, api_->Submit(job));
  job_id_ = submitted["job_id"];
  std::set<std::string> chains;
  for (const Json& u : submitted["units"]) chains.insert(u["chain"].get<std::string>());
  std::printf("      job %s: %zu candidates, %zu training units\n", job_id_.c_str(), chains.size(),
              submitted["units"].size());
  std::string last_line;
  int last_stage = 1;
  double train_seconds = 0;
  // Bounded: the demo gives up after an hour.
  for (int i = 0; i < 3600; ++i) {
    IDLEGRID_ASSIGN_OR_RETURN(Json s, api_->JobStatus(job_id_));
    const std::string state = s["state"];
    const int stage = s["stage"];
    const int stages = s["stages"];
    if (stage != last_stage && stage == 2) {
      train_seconds = Since(t0);
      std::printf("      candidates ranked by validation Dice on held-out strokes:\n");
      for (const Json& r : s["summary"]["ranking"]) {
        std::printf("        %-16s %s\n", r["name"].get<std::string>().c_str(),
                    r["score"].is_null() ? "-" : std::to_string(r["score"].get<double>()).substr(0, 6).c_str());
      }
    }
    if (stage != last_stage && s["summary"].contains("review") && stage == 3) {
      // Where a user would correct first: the slices the candidates are most unsure of.
      const Json& review = s["summary"]["review"];
      std::string where;
      for (size_t k = 0; k < review["where"].size() && k < 5; ++k) where += " " + std::to_string(review["where"][k].get<int64_t>() + 1);
      std::printf("      where to correct first (most uncertain of %zu slices):%s\n", review["slices"].size(), where.c_str());
    }
    last_stage = stage;
    int done = 0, running = 0, total = 0;
    std::string working;
    for (const Json& u : s["units"]) {
      if (u["stage"] != stage) continue;
      ++total;
      done += u["state"] == "done";
      if (u["state"] == "leased") {
        ++running;
        working += " " + u["unit_id"].get<std::string>().substr(job_id_.size() + 1) + " " +
                   std::to_string(static_cast<int>(100 * u["progress"].get<double>())) + "%";
      }
    }
    char line[512];
    const char* what = stage == 1 ? "training" : stage < stages ? "review: where are the candidates unsure?" : "inference";
    std::snprintf(line, sizeof(line), "      %5.0f s  stage %d/%d (%s): %d/%d units done;%s", Since(t0), stage, stages,
                  what, done, total, working.c_str());
    if (line != last_line && (i % 5 == 0 || state != "running")) {
      std::printf("%s\n", line);
      last_line = line;
    }
    if (state == "done") break;
    if (state == "failed" || state == "cancelled") {
      return InternalError("the job " + state + ": " + s["error"].get<std::string>());
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  IDLEGRID_ASSIGN_OR_RETURN(Json s, api_->JobStatus(job_id_));
  if (s["state"] != "done") return DeadlineExceededError("the job did not finish within an hour");
  summary_["seconds"]["train_candidates"] = train_seconds;
  summary_["seconds"]["inference"] = Since(t0) - train_seconds;
  Json ranking = Json::object();
  for (const Json& r : s["summary"]["ranking"]) ranking[r["name"].get<std::string>()] = r["score"];
  summary_["validation_dice"] = ranking;
  summary_["chosen_model"] = s["summary"]["ranking"][0]["name"];
  std::map<std::string, int> per_node;
  std::map<std::string, int> kinds;
  for (const Json& u : s["units"]) {
    per_node[u["node"].is_null() ? "?" : u["node"].get<std::string>()]++;
    kinds[u["kind"].get<std::string>()]++;
  }
  summary_["units"] = kinds;
  if (s["summary"].contains("review")) summary_["where_to_correct"] = s["summary"]["review"]["where"];
  summary_["units_per_node"] = per_node;
  summary_["job"] = job_id_;
  return Status::Ok();
}

Status Demo::Score() {
  std::printf("[4/4] fetching the stitched segmentation and scoring it against the ground truth\n");
  IDLEGRID_RETURN_IF_ERROR(api_->FetchOutput(job_id_, "labels", out_ + "/labels.tif"));
  IDLEGRID_RETURN_IF_ERROR(api_->FetchOutput(job_id_, "model", out_ + "/model.pt"));
  IDLEGRID_ASSIGN_OR_RETURN(Volume labels, ReadTiff(out_ + "/labels.tif"));
  if (labels.shape() != sample_.truth.shape()) return DataLossError("the label stack has the wrong shape");
  Json dice = Json::object();
  const char* names[] = {"", "matrix", "pores", "inclusions"};
  double mean = 0;
  for (int c = 1; c <= 3; ++c) {
    int64_t both = 0, a = 0, b = 0;
    for (int64_t i = 0; i < labels.shape().elements(); ++i) {
      const bool p = labels.data<uint8_t>()[i] == c, t = sample_.truth.data<uint8_t>()[i] == c;
      both += p && t;
      a += p;
      b += t;
    }
    const double d = a + b ? 2.0 * static_cast<double>(both) / static_cast<double>(a + b) : 1.0;
    dice[names[c]] = d;
    mean += d / 3;
  }
  dice["mean"] = mean;
  summary_["whole_volume_dice_vs_truth"] = dice;
  std::printf("      whole-volume Dice vs ground truth: matrix %.3f, pores %.3f, inclusions %.3f (mean %.3f)\n",
              dice["matrix"].get<double>(), dice["pores"].get<double>(), dice["inclusions"].get<double>(), mean);
  // Preview: the painted slice, the prediction and the truth side by side.
  const int64_t z = sample_.label_slice, w = labels.shape().x, h = labels.shape().y;
  std::vector<uint8_t> gray = GraySlice(sample_.image, z), pred = gray, truth = gray, scrib = gray;
  OverlayLabels(sample_.scribbles, z, 0.8, &scrib);
  OverlayLabels(labels, z, 0.45, &pred);
  OverlayLabels(sample_.truth, z, 0.45, &truth);
  std::vector<uint8_t> row(static_cast<size_t>(4 * w * h * 3));
  for (int64_t y = 0; y < h; ++y) {
    int panel = 0;
    for (const std::vector<uint8_t>* p : {&gray, &scrib, &pred, &truth}) {
      std::copy(p->begin() + y * w * 3, p->begin() + (y + 1) * w * 3, row.begin() + (y * 4 * w + panel * w) * 3);
      ++panel;
    }
  }
  IDLEGRID_RETURN_IF_ERROR(WritePngRgb(out_ + "/preview.png", 4 * w, h, row));
  return Status::Ok();
}

int Demo::Run() {
  const auto t0 = Clock::now();
  Status st = MakeDirs(out_, 0755);
  if (st.ok()) st = Sample();
  if (st.ok()) st = StartGrid();
  if (st.ok()) st = Sweep();
  if (st.ok()) st = Score();
  grid_.reset();  // nodes give back anything unfinished; the server stops
  if (!st.ok()) {
    std::fprintf(stderr, "idlegrid-demo: %s\n", st.ToString().c_str());
    return 1;
  }
  summary_["seconds"]["total"] = Since(t0);
  st = WriteFileAtomic(out_ + "/summary.json", summary_.dump(2) + "\n");
  if (!st.ok()) {
    std::fprintf(stderr, "idlegrid-demo: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("done in %.0f s: %s/labels.tif, preview.png, summary.json\n", Since(t0), out_.c_str());
  return 0;
}

}  // namespace
}  // namespace idlegrid

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  CLI::App app{"idlegrid demo: sample -> server + two nodes -> candidate sweep -> best model -> slab inference"};
  std::string out = "out/demo";
  std::string bin = std::filesystem::path(argv[0]).parent_path().string();
  app.add_option("--out", out, "output directory");
  app.add_option("--bin", bin, "folder with idlegrid-node and idlegrid-worker");
  CLI11_PARSE(app, argc, argv);
  out = std::filesystem::absolute(out).string();
  bin = std::filesystem::absolute(bin).string();
  return idlegrid::Demo(out, bin).Run();
}
