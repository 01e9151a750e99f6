// idlegrid-worker as a real process: units in, JSON lines and files out, signals.
#include "idlegrid/models/worker.h"

#include <chrono>
#include <filesystem>

#include <catch2/catch.hpp>

#include "child_process.h"
#include "idlegrid/models/config_json.h"
#include "idlegrid/models/model.h"
#include "idlegrid/models/trainer.h"
#include "idlegrid/shared/protocol.h"
#include "idlegrid/shared/tiff_io.h"
#include "model_fixtures.h"
#include "test_util.h"

namespace idlegrid::models {
namespace {

using testing::ChildProcess;
using testing::SmallSample;
using testing::TempDir;

const std::string kWorker = std::string(IDLEGRID_BIN_DIR) + "/idlegrid-worker";

struct Dirs {
  TempDir root;
  std::string inputs = root / "in", outputs = root / "out";
  Dirs() {
    std::filesystem::create_directories(inputs);
    REQUIRE(WriteTiff(inputs + "/image", SmallSample().image).ok());
    REQUIRE(WriteTiff(inputs + "/labels", SmallSample().scribbles).ok());
  }
};

BlobRef Ref() {
  BlobRef b;
  b.sha256 = std::string(64, 'a');
  b.size = 1;
  return b;
}

WorkUnit TrainUnit(const ModelConfig& c, int64_t begin, int64_t end, bool with_checkpoint) {
  WorkUnit u;
  u.unit_id = "u1";
  u.job_id = "j1";
  u.kind = UnitKind::kTrainEpochs;
  u.config = Json{{"model", ConfigToJson(c)}};
  u.inputs["image"] = Ref();
  u.inputs["labels"] = Ref();
  if (with_checkpoint) u.inputs["checkpoint"] = Ref();
  u.threads = 1;
  u.checkpoint_every_s = 3600;
  u.seed = 11;
  u.epochs = EpochRange{begin, end};
  return u;
}

std::string WriteUnit(const WorkUnit& u, const std::string& path) {
  testing::Spit(path, u.ToJson().dump());
  return path;
}

std::vector<Json> Events(const std::vector<std::string>& lines) {
  std::vector<Json> out;
  for (const std::string& l : lines) {
    StatusOr<Json> j = ParseJson(l);
    REQUIRE(j.ok());
    out.push_back(*j);
  }
  return out;
}

// Weights of a worker's checkpoint, as a checksum.
std::string CheckpointDigest(const ModelConfig& c, const std::string& path) {
  TrainerOptions o;
  o.seed = 11;
  auto t = Trainer::Create(c, SmallSample().image, &SmallSample().scribbles, o).value();
  REQUIRE(t->LoadCheckpoint(path).ok());
  return t->WeightsDigest();
}

ModelConfig SlowConfig() {  // ~0.1 s per step: long enough to interrupt mid-epoch
  ModelConfig c = testing::TinyConfig("unet2d", 2, 20);
  c.patch_y = c.patch_x = 64;
  c.base_filters = 16;
  c.batch_size = 4;
  return c;
}

TEST_CASE("a chain of training units reproduces one long unit", "[models][worker]") {
  Dirs d;
  ModelConfig c = testing::TinyConfig("unet2d", 2, 3);
  ChildProcess whole({kWorker, "run", WriteUnit(TrainUnit(c, 0, 2, false), d.root / "u.json"),
                      "--inputs", d.inputs, "--outputs", d.root / "whole"});
  std::vector<Json> ev = Events(whole.Drain(60000));
  REQUIRE(whole.Wait(5000) == kWorkerOk);
  CHECK(ev.front()["event"] == "start");
  CHECK(ev.back()["event"] == "done");
  CHECK(ev.back()["model"] == true);
  int epochs = 0, checkpoints = 0;
  for (const Json& e : ev) {
    epochs += e["event"] == "epoch";
    checkpoints += e["event"] == "checkpoint";
  }
  CHECK(epochs == 2);
  CHECK(checkpoints >= 2);
  CHECK(std::filesystem::exists(d.root / "whole/model.pt"));
  CHECK(ParseJson(testing::Slurp(d.root / "whole/metrics.json")).value()["history"].size() == 2);
  auto package = Model::Load(d.root / "whole/model.pt");
  REQUIRE(package.ok());
  CHECK((*package)->metadata()["fingerprint"]["labelled_per_class"].size() == 3);
  CHECK((*package)->metadata()["history"].size() == 2);

  ChildProcess first({kWorker, "run", WriteUnit(TrainUnit(c, 0, 1, false), d.root / "u1.json"),
                      "--inputs", d.inputs, "--outputs", d.root / "first"});
  first.Drain(60000);
  REQUIRE(first.Wait(5000) == kWorkerOk);
  CHECK_FALSE(std::filesystem::exists(d.root / "first/model.pt"));  // not the last epoch
  std::filesystem::copy_file(d.root / "first/checkpoint.pt", d.inputs + "/checkpoint");
  ChildProcess second({kWorker, "run", WriteUnit(TrainUnit(c, 1, 2, true), d.root / "u2.json"),
                       "--inputs", d.inputs, "--outputs", d.root / "second"});
  second.Drain(60000);
  REQUIRE(second.Wait(5000) == kWorkerOk);
  CHECK(CheckpointDigest(c, d.root / "second/checkpoint.pt") ==
        CheckpointDigest(c, d.root / "whole/checkpoint.pt"));
}

TEST_CASE("SIGTERM mid-epoch checkpoints within 2 s and resuming loses nothing", "[models][worker]") {
  Dirs d;
  ModelConfig c = SlowConfig();
  ChildProcess straight({kWorker, "run", WriteUnit(TrainUnit(c, 0, 2, false), d.root / "u.json"),
                         "--inputs", d.inputs, "--outputs", d.root / "straight"});
  straight.Drain(120000);
  REQUIRE(straight.Wait(5000) == kWorkerOk);

  ChildProcess victim({kWorker, "run", d.root / "u.json", "--inputs", d.inputs, "--outputs",
                       d.root / "victim"});
  // Wait until it is training (first progress line), then stop it.
  bool training = false;
  for (int i = 0; i < 100 && !training; ++i) {
    std::optional<std::string> line = victim.ReadLine(30000);
    REQUIRE(line);
    training = ParseJson(*line).value()["event"] == "progress";
  }
  REQUIRE(training);
  auto t0 = std::chrono::steady_clock::now();
  victim.Signal(SIGTERM);
  int code = victim.Wait(5000);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(code == kWorkerInterrupted);
  CHECK(seconds < 2.0);
  std::vector<Json> ev = Events(victim.Drain(1000));
  bool checkpointed = false;
  int64_t epoch = -1, step = -1;
  for (const Json& e : ev) {
    if (e["event"] == "checkpoint" && e["reason"] == "interrupt") {
      checkpointed = true;
      epoch = e["epoch"];
      step = e["step"];
    }
  }
  REQUIRE(checkpointed);
  CHECK(epoch * c.steps_per_epoch + step > 0);
  CHECK(epoch * c.steps_per_epoch + step < 2 * c.steps_per_epoch);

  std::filesystem::copy_file(d.root / "victim/checkpoint.pt", d.inputs + "/checkpoint");
  ChildProcess resumed({kWorker, "run", WriteUnit(TrainUnit(c, epoch, 2, true), d.root / "r.json"),
                        "--inputs", d.inputs, "--outputs", d.root / "resumed"});
  std::vector<Json> rev = Events(resumed.Drain(120000));
  REQUIRE(resumed.Wait(5000) == kWorkerOk);
  CHECK(rev.front()["step"] == step);  // it continued where the first one stopped
  CHECK(CheckpointDigest(c, d.root / "resumed/checkpoint.pt") ==
        CheckpointDigest(c, d.root / "straight/checkpoint.pt"));
}

// Trains `c` for its first epoch in a worker process and leaves the model as input "model".
void TrainModelInput(const Dirs& d, const ModelConfig& c) {
  ChildProcess train({kWorker, "run", WriteUnit(TrainUnit(c, 0, 1, false), d.root / "u.json"),
                      "--inputs", d.inputs, "--outputs", d.root / "train"});
  train.Drain(60000);
  REQUIRE(train.Wait(5000) == kWorkerOk);
  std::filesystem::copy_file(d.root / "train/model.pt", d.inputs + "/model");
}

WorkUnit SlabUnit(const std::string& output, const SlabRange& slab) {
  WorkUnit u;
  u.unit_id = "s1";
  u.job_id = "j1";
  u.kind = UnitKind::kInferSlab;
  u.config = Json{{"output", output}};
  u.inputs["model"] = Ref();
  u.inputs["volume"] = Ref();
  u.threads = 1;
  u.slab = slab;
  return u;
}

TEST_CASE("an inference unit writes its slab", "[models][worker]") {
  Dirs d;
  ModelConfig c = testing::TinyConfig("unet25d", 1, 2);
  TrainModelInput(d, c);
  std::filesystem::copy_file(d.inputs + "/image", d.inputs + "/volume");
  const WorkUnit u = SlabUnit("probabilities", SlabRange{4, 8, c.InferenceHalo(), c.InferenceHalo()});
  ChildProcess infer({kWorker, "run", WriteUnit(u, d.root / "s.json"), "--inputs", d.inputs,
                      "--outputs", d.root / "infer"});
  std::vector<Json> ev = Events(infer.Drain(60000));
  REQUIRE(infer.Wait(5000) == kWorkerOk);
  CHECK(ev.back()["event"] == "done");
  Volume labels = ReadTiff(d.root / "infer/labels.tif").value();
  CHECK(labels.shape() == VolumeShape{4, 64, 64, 1});
  CHECK(ReadTiff(d.root / "infer/probabilities.tif").value().shape().c == 3);
  InferenceResult whole = Model::Load(d.inputs + "/model").value()->PredictVolume(SmallSample().image).value();
  CHECK(labels == ExtractSlab(whole.labels, SlabRange{4, 8, 0, 0}).value());

  // The same slab from an input that holds its slices alone (what the server cuts for it).
  WorkUnit cut = u;
  cut.region = SliceRegion::Range(12, u.slab->read_begin(), u.slab->read_end());
  Dirs e;
  std::filesystem::copy_file(d.inputs + "/model", e.inputs + "/model");
  REQUIRE(CopyTiffSlices(d.inputs + "/image", *cut.region, e.inputs + "/volume").ok());
  ChildProcess from_cut({kWorker, "run", WriteUnit(cut, e.root / "s.json"), "--inputs", e.inputs,
                         "--outputs", e.root / "infer"});
  from_cut.Drain(60000);
  REQUIRE(from_cut.Wait(5000) == kWorkerOk);
  CHECK(ReadTiff(e.root / "infer/labels.tif").value() == labels);

  // A cut of the wrong depth is bad data, named.
  std::filesystem::remove(e.inputs + "/volume");
  REQUIRE(CopyTiffSlices(d.inputs + "/image", SliceRegion::Range(12, 0, 3), e.inputs + "/volume").ok());
  ChildProcess wrong({kWorker, "run", WriteUnit(cut, e.root / "s.json"), "--inputs", e.inputs,
                      "--outputs", e.root / "infer2"});
  std::vector<Json> err = Events(wrong.Drain(60000));
  CHECK(wrong.Wait(5000) == kWorkerBadInput);
  REQUIRE_FALSE(err.empty());
  CHECK_THAT(err.back()["message"].get<std::string>(),
             Catch::Contains("input \"volume\" has 3 slices; the slab needs 8 (slices 2 to 9)"));
}

TEST_CASE("an inference slab reports progress and SIGTERM stops it within 2 s", "[models][worker]") {
  Dirs d;
  ModelConfig c = testing::TinyConfig("unet2d", 1, 2);
  TrainModelInput(d, c);
  // The sample tiled to 8 slices of 512 x 512: some 1,800 tiles of 64 px, seconds of work.
  const Volume& small = SmallSample().image;
  Volume big = Volume::Create({8, 512, 512, 1}, small.dtype()).value();
  for (int64_t z = 0; z < 8; ++z) {
    for (int64_t y = 0; y < 512; ++y) {
      for (int64_t x = 0; x < 512; ++x) big.at<uint16_t>(z, y, x) = small.at<uint16_t>(z, y % 64, x % 64);
    }
  }
  REQUIRE(WriteTiff(d.inputs + "/volume", big).ok());
  const WorkUnit u = SlabUnit("labels", SlabRange{0, 8, 0, 0});
  ChildProcess infer({kWorker, "run", WriteUnit(u, d.root / "s.json"), "--inputs", d.inputs,
                      "--outputs", d.root / "infer"});
  // Progress arrives while the tiles run, not only at the end.
  double fraction = -1;
  for (int i = 0; i < 100 && fraction < 0; ++i) {
    std::optional<std::string> line = infer.ReadLine(30000);
    REQUIRE(line);
    const Json e = ParseJson(*line).value();
    REQUIRE(e["event"] != "done");
    if (e["event"] == "progress") fraction = e["fraction"];
  }
  CHECK(fraction > 0);
  CHECK(fraction < 1);
  auto t0 = std::chrono::steady_clock::now();
  infer.Signal(SIGTERM);
  const int code = infer.Wait(5000);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(code == kWorkerInterrupted);
  CHECK(seconds < 2.0);
  const std::vector<Json> ev = Events(infer.Drain(1000));
  REQUIRE_FALSE(ev.empty());
  CHECK(ev.back()["event"] == "interrupted");
  CHECK_FALSE(std::filesystem::exists(d.root / "infer/labels.tif"));
}

TEST_CASE("bad units and bad data exit with their own codes", "[models][worker]") {
  Dirs d;
  ModelConfig c = testing::TinyConfig("unet2d", 1, 1);
  auto run = [&](const WorkUnit& u, const std::string& name) {
    ChildProcess p({kWorker, "run", WriteUnit(u, d.root / (name + ".json")), "--inputs", d.inputs,
                    "--outputs", d.root / name});
    std::vector<Json> ev = Events(p.Drain(60000));
    int code = p.Wait(5000);
    if (code != kWorkerOk) {
      REQUIRE_FALSE(ev.empty());
      CHECK(ev.back()["event"] == "error");
      CHECK(ev.back()["exit_code"] == code);
    }
    return code;
  };
  ModelConfig unknown = c;
  WorkUnit u = TrainUnit(unknown, 0, 1, false);
  u.config["model"]["architecture"] = "gpt";
  CHECK(run(u, "arch") == kWorkerBadUnit);

  WorkUnit no_labels = TrainUnit(c, 0, 1, false);
  no_labels.inputs.erase("labels");
  CHECK(run(no_labels, "nolabels") == kWorkerBadUnit);

  // Runs a unit with one input file replaced by `volume`, then puts the original back.
  auto run_with = [&](const std::string& input, const Volume& volume, const std::string& name) {
    const std::string path = d.inputs + "/" + input;
    std::filesystem::rename(path, path + ".good");
    REQUIRE(WriteTiff(path, volume).ok());
    int code = run(TrainUnit(c, 0, 1, false), name);
    std::filesystem::remove(path);
    std::filesystem::rename(path + ".good", path);
    return code;
  };
  Volume nan = Volume::Create({12, 64, 64, 1}, DType::kFloat32).value();
  nan.data<float>()[77] = std::nanf("");
  CHECK(run_with("image", nan, "nan") == kWorkerBadInput);
  Volume small_labels = Volume::Create({12, 32, 32, 1}, DType::kUInt8).value();
  CHECK(run_with("labels", small_labels, "mismatch") == kWorkerBadInput);

  WorkUnit missing = TrainUnit(c, 0, 1, true);  // names a checkpoint that is not there
  CHECK(run(missing, "missing") == kWorkerIoError);

  // An unknown key with invalid UTF-8 ends up quoted in the error: still a clean exit.
  Json bad_utf8 = TrainUnit(c, 0, 1, false).ToJson();
  std::string text = bad_utf8.dump();
  text.insert(1, "\"\xff\xfe\":1,");
  testing::Spit(d.root / "utf8.json", text);
  ChildProcess utf8({kWorker, "run", d.root / "utf8.json", "--inputs", d.inputs, "--outputs", d.root / "u"});
  std::vector<std::string> utf8_lines = utf8.Drain(10000);
  CHECK(utf8.Wait(5000) == kWorkerBadUnit);
  REQUIRE_FALSE(utf8_lines.empty());
  CHECK(ParseJson(utf8_lines.back()).value()["event"] == "error");

  testing::Spit(d.root / "garbage.json", "{\"schema\":1");
  ChildProcess garbage({kWorker, "run", d.root / "garbage.json", "--inputs", d.inputs, "--outputs", d.root / "g"});
  garbage.Drain(10000);
  CHECK(garbage.Wait(5000) == kWorkerBadUnit);
  ChildProcess usage({kWorker, "frobnicate"});
  CHECK(usage.Wait(5000) == kWorkerUsage);
}

}  // namespace
}  // namespace idlegrid::models

namespace idlegrid::models {
namespace {

TEST_CASE("a training unit with an \"init\" model fine-tunes it", "[models][worker]") {
  Dirs d;
  ModelConfig c = testing::TinyConfig("unet2d", 1, 2);
  ChildProcess first({kWorker, "run", WriteUnit(TrainUnit(c, 0, 1, false), d.root / "a.json"), "--inputs", d.inputs,
                      "--outputs", d.root / "a"});
  first.Drain(60000);
  REQUIRE(first.Wait(5000) == kWorkerOk);
  std::filesystem::copy_file(d.root / "a/model.pt", d.inputs + "/init");
  WorkUnit tune = TrainUnit(c, 0, 1, false);
  tune.inputs["init"] = Ref();
  ChildProcess second({kWorker, "run", WriteUnit(tune, d.root / "b.json"), "--inputs", d.inputs, "--outputs",
                       d.root / "b"});
  second.Drain(60000);
  CHECK(second.Wait(5000) == kWorkerOk);
  // Fine-tuning moved away from both the initial weights and a fresh run of the same unit.
  const std::string a = Model::Load(d.root / "a/model.pt").value()->WeightsDigest();
  const std::string b = Model::Load(d.root / "b/model.pt").value()->WeightsDigest();
  CHECK(a != b);
  // Another network shape is a bad unit.
  ModelConfig other = c;
  other.base_filters = 16;
  WorkUnit wrong = TrainUnit(other, 0, 1, false);
  wrong.inputs["init"] = Ref();
  ChildProcess third({kWorker, "run", WriteUnit(wrong, d.root / "c.json"), "--inputs", d.inputs, "--outputs",
                      d.root / "c"});
  third.Drain(60000);
  CHECK(third.Wait(5000) == kWorkerBadUnit);
}

}  // namespace
}  // namespace idlegrid::models
