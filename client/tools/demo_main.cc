// idlegrid-demo: the main job, end to end, as far as the project has come. One process plays
// the work server; two "nodes" run real idlegrid-worker processes side by side:
//   1. generates the bundled sample (3-phase volume, ground truth, painted scribbles) and
//      stores image and labels as content-addressed blobs;
//   2. plans the no-parameter candidates and splits each into a chain of signed
//      train_epochs units (each resumes from the previous unit's checkpoint blob);
//   3. each node verifies an envelope against the pinned key, fetches its input blobs with
//      hash checks, runs the worker, and returns checkpoint/model/metrics as blobs;
//   4. picks the candidate with the best validation Dice (held-out strokes), splits the
//      volume into slabs with the model's halo, runs infer_slab units on both nodes, and
//      stitches labels.tif, scoring it against the ground truth in summary.json.
// The SQLite server, HTTPS and the node daemon replace the in-process parts as they land.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>

#include <CLI/CLI.hpp>

#include "idlegrid/models/config_json.h"
#include "idlegrid/models/strategy.h"
#include "idlegrid/shared/blob_store.h"
#include "idlegrid/shared/envelope.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/sample_volume.h"
#include "idlegrid/shared/tiff_io.h"

extern char** environ;

namespace idlegrid {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

// A unit waiting for a node, with what to do with its outputs.
struct PendingUnit {
  WorkUnit unit;
  std::string label;  // for progress lines
  std::map<std::string, std::string> outputs;  // output file -> result name
};

struct RunningUnit {
  PendingUnit pending;
  pid_t pid = -1;
  std::string dir;
  Clock::time_point started;
};

class Demo {
 public:
  Demo(std::string out, std::string worker) : out_(std::move(out)), worker_(std::move(worker)) {}
  int Run();

 private:
  Status Setup();
  Status TrainCandidates();
  Status Infer();
  // Runs every queued unit on the two nodes; returns when all are done.
  Status Drain();
  Status Launch(int node, PendingUnit unit);
  Status Collect(int node, int exit_code);
  void PrintStatus();
  WorkUnit NewUnit(const std::string& id, UnitKind kind);

  std::string out_, worker_;
  std::unique_ptr<BlobStore> blobs_;
  std::optional<PrivateKey> key_;
  std::optional<PublicKey> pinned_;
  ReplayGuard replay_[2];
  MaterialsSample sample_;
  std::deque<PendingUnit> queue_;
  std::optional<RunningUnit> running_[2];
  std::map<std::string, BlobRef> results_;  // "<unit_id>/<name>" -> blob
  std::vector<models::ModelConfig> candidates_;
  std::map<std::string, PendingUnit> next_in_chain_;  // unit id -> the unit resuming it
  int units_done_[2] = {0, 0};
  int next_lease_ = 0;
  Json summary_;
  const std::string nodes_[2] = {"node-a", "node-b"};
};

Status Demo::Setup() {
  auto t0 = Clock::now();
  std::printf("[1/4] generating the bundled sample and storing it as blobs\n");
  IDLEGRID_ASSIGN_OR_RETURN(sample_, GenerateMaterialsSample(SampleOptions()));
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(out_));
  IDLEGRID_RETURN_IF_ERROR(WriteTiff(out_ + "/image.tif", sample_.image));
  IDLEGRID_RETURN_IF_ERROR(WriteTiff(out_ + "/truth.tif", sample_.truth));
  IDLEGRID_RETURN_IF_ERROR(WriteTiff(out_ + "/scribbles.tif", sample_.scribbles));
  IDLEGRID_ASSIGN_OR_RETURN(blobs_, BlobStore::Open(out_ + "/grid/blobs"));
  IDLEGRID_ASSIGN_OR_RETURN(results_["sample/image"], blobs_->PutFile(out_ + "/image.tif"));
  IDLEGRID_ASSIGN_OR_RETURN(results_["sample/labels"], blobs_->PutFile(out_ + "/scribbles.tif"));
  IDLEGRID_ASSIGN_OR_RETURN(key_, PrivateKey::Generate());
  IDLEGRID_RETURN_IF_ERROR(key_->SavePem(out_ + "/grid/signing.pem"));
  pinned_ = key_->public_key();  // what the nodes pinned at enrollment
  int64_t painted = 0;
  for (int64_t i = 0; i < sample_.scribbles.shape().elements(); ++i) {
    painted += sample_.scribbles.data<uint8_t>()[i] != 0;
  }
  std::printf("      %s uint16 volume; %lld pixels painted on slice %lld\n",
              sample_.image.shape().ToString().c_str(), static_cast<long long>(painted),
              static_cast<long long>(sample_.label_slice));
  summary_["sample"] = {{"shape", sample_.image.shape().ToString()}, {"painted_pixels", painted}};
  summary_["seconds"]["sample"] = Since(t0);
  return Status::Ok();
}

WorkUnit Demo::NewUnit(const std::string& id, UnitKind kind) {
  WorkUnit u;
  u.unit_id = id;
  u.job_id = "demo";
  u.kind = kind;
  u.threads = 1;  // one core per node
  u.checkpoint_every_s = 30;
  return u;
}

Status Demo::TrainCandidates() {
  auto t0 = Clock::now();
  models::Resources resources;
  resources.threads = 1;
  IDLEGRID_ASSIGN_OR_RETURN(models::DataFingerprint fp,
                            models::ComputeFingerprint(sample_.image, &sample_.scribbles, resources));
  candidates_ = models::PlanCandidates(fp);
  std::printf("[2/4] training %zu candidates chosen by the strategy (no parameters):\n",
              candidates_.size());
  for (const models::ModelConfig& c : candidates_) {
    std::printf("      %-14s patch %lldx%lldx%lld, batch %lld, %lld epochs of %lld steps\n",
                c.name.c_str(), static_cast<long long>(c.patch_z), static_cast<long long>(c.patch_y),
                static_cast<long long>(c.patch_x), static_cast<long long>(c.batch_size),
                static_cast<long long>(c.epochs), static_cast<long long>(c.steps_per_epoch));
    // A chain of two units: the second resumes from the first one's checkpoint blob.
    const int64_t half = (c.epochs + 1) / 2;
    std::string previous;
    for (int64_t begin = 0; begin < c.epochs; begin += half) {
      WorkUnit u = NewUnit(c.name + "-e" + std::to_string(begin), UnitKind::kTrainEpochs);
      u.config = Json{{"model", models::ConfigToJson(c)}};
      u.seed = 1;
      u.epochs = EpochRange{begin, std::min(c.epochs, begin + half)};
      u.inputs["image"] = results_["sample/image"];
      u.inputs["labels"] = results_["sample/labels"];
      PendingUnit p{u,
                    c.name + " epochs " + std::to_string(begin + 1) + "-" + std::to_string(u.epochs->end),
                    {{"checkpoint.pt", "checkpoint"}, {"metrics.json", "metrics"}, {"model.pt", "model"}}};
      if (previous.empty()) {
        queue_.push_back(p);
      } else {
        next_in_chain_[previous] = p;
      }
      previous = u.unit_id;
    }
  }
  IDLEGRID_RETURN_IF_ERROR(Drain());
  summary_["seconds"]["train"] = Since(t0);
  return Status::Ok();
}

Status Demo::Launch(int node, PendingUnit p) {
  // Server side: sign the unit for this node's lease.
  const int64_t now = UnixNow();
  const std::string lease = "lease-" + std::to_string(++next_lease_);
  IDLEGRID_ASSIGN_OR_RETURN(SignedUnit envelope, SignUnit(p.unit, lease, nodes_[node], now, now + 3600, *key_));
  IDLEGRID_ASSIGN_OR_RETURN(std::string wire, CanonicalJson(envelope.ToJson()));

  // Node side: trust only what verifies against the pinned key, fetch inputs by hash.
  VerifyOptions vo{nodes_[node], now, &replay_[node]};
  IDLEGRID_ASSIGN_OR_RETURN(SignedUnit verified, VerifyUnit(wire, *pinned_, vo));
  const std::string dir = out_ + "/grid/" + nodes_[node] + "/" + lease;
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(dir + "/in"));
  for (const auto& [name, ref] : verified.unit.inputs) {
    IDLEGRID_ASSIGN_OR_RETURN(std::string path, blobs_->PathOf(ref.sha256));
    fs::copy_file(path, dir + "/in/" + name, fs::copy_options::overwrite_existing);
    IDLEGRID_ASSIGN_OR_RETURN(std::string sha, Sha256File(dir + "/in/" + name));
    if (sha != ref.sha256) return DataLossError("input " + name + " does not match its hash");
  }
  IDLEGRID_ASSIGN_OR_RETURN(std::string unit_json, CanonicalJson(verified.unit.ToJson()));
  IDLEGRID_RETURN_IF_ERROR(WriteFileAtomic(dir + "/unit.json", unit_json));

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log = dir + "/events.jsonl";
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, (dir + "/stderr.txt").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> args = {worker_, "run", dir + "/unit.json", "--inputs", dir + "/in", "--outputs", dir + "/out"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, worker_.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return ErrnoError("cannot start " + worker_, rc);
  std::printf("      %s: %s\n", nodes_[node].c_str(), p.label.c_str());
  running_[node] = RunningUnit{std::move(p), pid, dir, Clock::now()};
  return Status::Ok();
}

Status Demo::Collect(int node, int exit_code) {
  RunningUnit r = std::move(*running_[node]);
  running_[node].reset();
  if (exit_code != 0) {
    StatusOr<std::string> events = ReadFile(r.dir + "/events.jsonl", 1 << 20);
    std::string last = events.ok() ? events->substr(events->rfind('\n', events->size() - 2) + 1) : "";
    return InternalError("unit " + r.pending.unit.unit_id + " failed with exit code " +
                         std::to_string(exit_code) + ": " + last);
  }
  ++units_done_[node];
  // Upload: every output becomes a blob the server verifies by hash.
  for (const auto& [file, name] : r.pending.outputs) {
    const std::string path = r.dir + "/out/" + file;
    if (!fs::exists(path)) continue;
    IDLEGRID_ASSIGN_OR_RETURN(BlobRef ref, blobs_->PutFile(path));
    results_[r.pending.unit.unit_id + "/" + name] = ref;
  }
  auto next = next_in_chain_.find(r.pending.unit.unit_id);
  if (next != next_in_chain_.end()) {
    PendingUnit p = next->second;
    p.unit.inputs["checkpoint"] = results_.at(r.pending.unit.unit_id + "/checkpoint");
    queue_.push_front(p);  // keep the chain going first
    next_in_chain_.erase(next);
  }
  fs::remove_all(r.dir + "/in");  // the inputs are blobs already
  return Status::Ok();
}

void Demo::PrintStatus() {
  std::string line = "      ...";
  for (int n = 0; n < 2; ++n) {
    if (!running_[n]) continue;
    StatusOr<std::string> events = ReadFile(running_[n]->dir + "/events.jsonl", 1 << 22);
    std::string progress = "starting";
    if (events.ok()) {
      size_t at = events->rfind("{\"epoch\"");
      size_t p = events->rfind("\"event\":\"progress\"");
      if (p != std::string::npos) {
        size_t start = events->rfind('\n', p);
        start = start == std::string::npos ? 0 : start + 1;
        StatusOr<Json> j = ParseJson(events->substr(start, events->find('\n', p) - start));
        if (j.ok() && j->contains("fraction")) {
          char buf[64];
          std::snprintf(buf, sizeof(buf), "%3.0f%%", 100 * (*j)["fraction"].get<double>());
          progress = buf;
          if (j->contains("loss")) {
            std::snprintf(buf, sizeof(buf), " loss %.3f", (*j)["loss"].get<double>());
            progress += buf;
          }
        }
      }
      (void)at;
    }
    line += " " + nodes_[n] + " " + running_[n]->pending.unit.unit_id + " " + progress + ";";
  }
  std::printf("%s\n", line.c_str());
}

Status Demo::Drain() {
  auto last_status = Clock::now();
  for (int64_t tick = 0; tick < 100000000; ++tick) {
    for (int n = 0; n < 2; ++n) {
      if (!running_[n] && !queue_.empty()) {
        PendingUnit p = queue_.front();
        queue_.pop_front();
        IDLEGRID_RETURN_IF_ERROR(Launch(n, p));
      }
    }
    if (!running_[0] && !running_[1] && queue_.empty()) return Status::Ok();
    for (int n = 0; n < 2; ++n) {
      if (!running_[n]) continue;
      int status = 0;
      if (waitpid(running_[n]->pid, &status, WNOHANG) == running_[n]->pid) {
        IDLEGRID_RETURN_IF_ERROR(Collect(n, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)));
      }
    }
    if (Since(last_status) > 15) {
      PrintStatus();
      last_status = Clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return DeadlineExceededError("the demo did not finish");
}

Status Demo::Infer() {
  auto t0 = Clock::now();
  // Pick the candidate whose last epoch scored best on the held-out strokes.
  std::string best;
  double best_dice = -1;
  Json scores = Json::object();
  for (const models::ModelConfig& c : candidates_) {
    const std::string last = c.name + "-e" + std::to_string(((c.epochs - 1) / ((c.epochs + 1) / 2)) * ((c.epochs + 1) / 2));
    IDLEGRID_ASSIGN_OR_RETURN(std::string text, blobs_->Read(results_.at(last + "/metrics").sha256, 1 << 20));
    IDLEGRID_ASSIGN_OR_RETURN(Json metrics, ParseJson(text));
    double dice = metrics["history"].back()["mean_dice"].get<double>();
    scores[c.name] = dice;
    std::printf("      %-14s validation Dice %.4f\n", c.name.c_str(), dice);
    if (dice > best_dice) best_dice = dice, best = last;
  }
  summary_["validation_dice"] = scores;
  const BlobRef model = results_.at(best + "/model");
  const std::string best_name = best.substr(0, best.rfind("-e"));
  summary_["chosen_model"] = best_name;
  std::printf("[3/4] best by validation: %s; segmenting the volume in slabs on both nodes\n",
              best_name.c_str());
  const models::ModelConfig* config = nullptr;
  for (const models::ModelConfig& c : candidates_) {
    if (c.name == best_name) config = &c;
  }
  const int64_t depth = sample_.image.shape().z;
  IDLEGRID_ASSIGN_OR_RETURN(std::vector<SlabRange> slabs, PlanSlabs(depth, 12, config->InferenceHalo()));
  for (size_t i = 0; i < slabs.size(); ++i) {
    WorkUnit u = NewUnit("slab-" + std::to_string(i), UnitKind::kInferSlab);
    u.config = Json{{"output", "labels"}};
    u.inputs["model"] = model;
    u.inputs["volume"] = results_["sample/image"];
    u.slab = slabs[i];
    queue_.push_back(PendingUnit{u, "slices " + std::to_string(slabs[i].z_begin) + "-" +
                                        std::to_string(slabs[i].z_end - 1) + " (halo " +
                                        std::to_string(config->InferenceHalo()) + ")",
                                 {{"labels.tif", "labels"}}});
  }
  IDLEGRID_RETURN_IF_ERROR(Drain());
  summary_["seconds"]["infer"] = Since(t0);

  std::printf("[4/4] stitching slab results into labels.tif\n");
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffWriter> writer,
                            TiffWriter::Open(out_ + "/labels.tif", sample_.image.shape(), DType::kUInt8));
  for (size_t i = 0; i < slabs.size(); ++i) {
    IDLEGRID_ASSIGN_OR_RETURN(std::string path, blobs_->PathOf(results_.at("slab-" + std::to_string(i) + "/labels").sha256));
    IDLEGRID_ASSIGN_OR_RETURN(Volume part, ReadTiff(path));
    IDLEGRID_RETURN_IF_ERROR(writer->Append(part));
  }
  IDLEGRID_RETURN_IF_ERROR(writer->Close());
  IDLEGRID_ASSIGN_OR_RETURN(Volume labels, ReadTiff(out_ + "/labels.tif"));
  Json dice = Json::object();
  const char* names[] = {"", "matrix", "pores", "inclusions"};
  double mean = 0;
  for (int c = 1; c <= 3; ++c) {
    int64_t both = 0, a = 0, b = 0;
    for (int64_t i = 0; i < labels.shape().elements(); ++i) {
      bool p = labels.data<uint8_t>()[i] == c, t = sample_.truth.data<uint8_t>()[i] == c;
      both += p && t;
      a += p;
      b += t;
    }
    double d = a + b ? 2.0 * static_cast<double>(both) / static_cast<double>(a + b) : 1.0;
    dice[names[c]] = d;
    mean += d / 3;
  }
  dice["mean"] = mean;
  summary_["whole_volume_dice_vs_truth"] = dice;
  std::printf("      whole-volume Dice vs ground truth: matrix %.3f, pores %.3f, inclusions %.3f (mean %.3f)\n",
              dice["matrix"].get<double>(), dice["pores"].get<double>(), dice["inclusions"].get<double>(), mean);
  return Status::Ok();
}

int Demo::Run() {
  auto t0 = Clock::now();
  Status st = Setup();
  if (st.ok()) st = TrainCandidates();
  if (st.ok()) st = Infer();
  if (!st.ok()) {
    std::fprintf(stderr, "idlegrid-demo: %s\n", st.ToString().c_str());
    for (int n = 0; n < 2; ++n) {
      if (running_[n]) kill(running_[n]->pid, SIGTERM);
    }
    return 1;
  }
  summary_["units_per_node"] = {{nodes_[0], units_done_[0]}, {nodes_[1], units_done_[1]}};
  summary_["seconds"]["total"] = Since(t0);
  st = WriteFileAtomic(out_ + "/summary.json", summary_.dump(2) + "\n");
  if (!st.ok()) {
    std::fprintf(stderr, "idlegrid-demo: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("done in %.0f s: %s/labels.tif (segmentation), summary.json; units per node: %d and %d\n",
              Since(t0), out_.c_str(), units_done_[0], units_done_[1]);
  return 0;
}

}  // namespace
}  // namespace idlegrid

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  CLI::App app{"idlegrid demo: sample -> candidate sweep on two nodes -> best model -> slab inference"};
  std::string out = "out/demo";
  std::string worker = (std::filesystem::path(argv[0]).parent_path() / "idlegrid-worker").string();
  app.add_option("--out", out, "output directory");
  app.add_option("--worker", worker, "idlegrid-worker executable");
  CLI11_PARSE(app, argc, argv);
  return idlegrid::Demo(out, worker).Run();
}
