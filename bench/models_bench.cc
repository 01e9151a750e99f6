// Benchmarks of models/ (run through the bench/ scripts, which also run the Python peers):
//   models_bench train-step THREADS BATCH PATCH FILTERS DEPTH CLASSES STEPS
//       ms per training step of our U-Net (forward, CE + Dice, backward, Adam) on a fixed
//       batch, then of a full Trainer step (sampling and augmentation included).
//   models_bench segment DIR SCRIBBLES.tif BUDGET_S THREADS
//       trains every candidate of the strategy within BUDGET_S seconds each and scores it
//       against DIR/truth.tif; prints one line per candidate and a summary line.
//   models_bench infer THREADS SIDE FILTERS
//       seconds per SIDE x SIDE slice of tiled inference with the four flips, each view
//       its own forward call (the baseline) and the views batched; RESULT line with the ratio.
//   models_bench denoise DIR BUDGET_S THREADS
//       self-supervised denoising of DIR/noisy.tif within BUDGET_S; writes DIR/denoised.tif.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "idlegrid/models/config_json.h"
#include "idlegrid/models/model.h"
#include "idlegrid/models/runtime.h"
#include "idlegrid/models/strategy.h"
#include "idlegrid/models/trainer.h"
#include "idlegrid/shared/tiff_io.h"
#include "networks.h"
#include "tensors.h"
#include "training_ops.h"

namespace idlegrid::models {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

template <typename T>
T Must(StatusOr<T> v) {
  if (!v.ok()) {
    std::fprintf(stderr, "models_bench: %s\n", v.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(v).value();
}
void Must(const Status& st) {
  if (!st.ok()) {
    std::fprintf(stderr, "models_bench: %s\n", st.ToString().c_str());
    std::exit(1);
  }
}

int TrainStep(int threads, int batch, int patch, int filters, int depth, int classes, int steps) {
  ConfigureCpuRuntime(threads);
  ModelConfig c;
  c.architecture = "unet2d";
  c.base_filters = filters;
  c.depth = depth;
  c.num_classes = classes;
  c.patch_y = c.patch_x = patch;
  c.batch_size = batch;
  torch::manual_seed(0);
  torch::nn::AnyModule net = BuildNetwork(c);
  torch::optim::Adam opt(ModuleOf(net)->parameters(), torch::optim::AdamOptions(1e-3).weight_decay(3e-5));
  torch::Tensor x = torch::randn({batch, 1, patch, patch});
  torch::Tensor t = torch::randint(1, classes + 1, {batch, patch, patch}, torch::kLong);
  Clock::time_point start;
  for (int i = 0; i < steps + 3; ++i) {
    if (i == 3) start = Clock::now();
    torch::Tensor loss = SparseSegmentationLoss(net.forward(x), t, torch::Tensor());
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  double pure = Since(start) * 1000 / steps;

  // The same network inside the Trainer: patch sampling and augmentation included.
  Volume image = Must(Volume::Create({1, 2 * patch, 2 * patch, 1}, DType::kUInt8));
  Volume labels = Must(Volume::Create({1, 2 * patch, 2 * patch, 1}, DType::kUInt8));
  for (int64_t i = 0; i < image.shape().elements(); ++i) {
    image.data<uint8_t>()[i] = static_cast<uint8_t>(i * 7);
    labels.data<uint8_t>()[i] = static_cast<uint8_t>(1 + (i / 97) % classes);
  }
  c.epochs = 1;
  c.steps_per_epoch = steps + 3;
  c.norm = Normalization{0, 255, 128, 64};
  c.validation_fraction = 0;
  auto trainer = Must(Trainer::Create(c, image, &labels, {}));
  for (int i = 0; i < 3; ++i) Must(trainer->Step().status());
  start = Clock::now();
  for (int i = 0; i < steps; ++i) Must(trainer->Step().status());
  double full = Since(start) * 1000 / steps;
  std::printf("%.3f %.3f\n", pure, full);
  return 0;
}

// Trains within `budget_s`: the strategy's configuration with its epochs capped to what the
// measured cost of a step (the median of ten) and of an epoch's validation pass allow (90% of
// what is left, so that the learning-rate schedule runs to its end rather than being cut by
// the budget: over 300 s, steps ran 5-8% slower than the probe measured).
std::unique_ptr<Trainer> TrainWithin(ModelConfig c, const Volume& image, const Volume* labels,
                                     double budget_s, double* seconds) {
  auto start = Clock::now();
  ModelConfig probe_config = c;  // one short epoch: 3 warm-up steps, 10 timed, a validation
  probe_config.epochs = 1;
  probe_config.steps_per_epoch = 13;
  auto probe = Must(Trainer::Create(probe_config, image, labels, {}));
  for (int i = 0; i < 3; ++i) Must(probe->Step().status());
  std::vector<double> times;
  for (int i = 0; i < 10; ++i) {
    auto t0 = Clock::now();
    Must(probe->Step().status());
    times.push_back(Since(t0));
  }
  std::sort(times.begin(), times.end());
  const double per_step = (times[4] + times[5]) / 2;  // the median: robust to a stray slow step
  auto t0 = Clock::now();
  Must(probe->FinishEpoch().status());
  const double per_epoch = per_step * static_cast<double>(c.steps_per_epoch) + Since(t0);
  const double left = budget_s - Since(start);
  c.epochs = std::clamp<int64_t>(static_cast<int64_t>(0.9 * left / per_epoch), 1, c.epochs);
  std::fprintf(stderr, "%s: %.1f ms a step, %.2f s an epoch: training %lld epochs\n", c.name.c_str(),
               per_step * 1e3, per_epoch, static_cast<long long>(c.epochs));
  TrainerOptions options;
  if (const char* seed = std::getenv("IDLEGRID_BENCH_SEED")) options.seed = std::strtoull(seed, nullptr, 10);
  auto trainer = Must(Trainer::Create(c, image, labels, options));
  Trainer::Hooks hooks;
  hooks.should_stop = [&] { return Since(start) > budget_s; };
  Status st = trainer->RunUntilEpoch(c.epochs, hooks);
  if (!st.ok() && st.code() != StatusCode::kCancelled) Must(st);
  *seconds = Since(start);
  return trainer;
}

// Experiments only: IDLEGRID_BENCH_OVERRIDE='{"learning_rate": 0.003}' replaces fields of
// every configuration the benchmark trains; IDLEGRID_BENCH_ONLY=NAME trains one candidate,
// IDLEGRID_BENCH_SEED=N seeds the trainers (and the validation split) with N instead of 0,
// and IDLEGRID_BENCH_PROBS=1 also writes each candidate's probabilities (NAME_probs.tif).
ModelConfig Overridden(const ModelConfig& c) {
  const char* o = std::getenv("IDLEGRID_BENCH_OVERRIDE");
  if (o == nullptr) return c;
  Json j = ConfigToJson(c);
  j.merge_patch(Must(ParseJson(o)));
  return Must(ConfigFromJson(j));
}

double MeanDice(const Volume& pred, const Volume& truth, int64_t classes) {
  double sum = 0;
  for (int64_t c = 1; c <= classes; ++c) {
    double tp = 0, p = 0, t = 0;
    for (int64_t i = 0; i < pred.shape().elements(); ++i) {
      bool a = pred.data<uint8_t>()[i] == c, b = truth.data<uint8_t>()[i] == c;
      tp += a && b;
      p += a;
      t += b;
    }
    sum += p + t > 0 ? 2 * tp / (p + t) : 1;
  }
  return sum / static_cast<double>(classes);
}

int Segment(const std::string& dir, const std::string& scribbles, double budget, int threads) {
  ConfigureCpuRuntime(threads);
  Volume image = Must(ReadTiff(dir + "/image.tif"));
  Volume truth = Must(ReadTiff(dir + "/truth.tif"));
  Volume labels = Must(ReadTiff(scribbles));
  Resources resources;
  resources.threads = threads;
  DataFingerprint fp = Must(ComputeFingerprint(image, &labels, resources));
  double best = 0, picked = 0, best_val = -1;
  std::string best_name, picked_name;
  for (ModelConfig c : PlanCandidates(fp)) {
    c = Overridden(c);
    if (const char* only = std::getenv("IDLEGRID_BENCH_ONLY")) {
      if (c.name != only) continue;
    }
    double seconds = 0;
    auto trainer = TrainWithin(c, image, &labels, budget, &seconds);
    const std::string path = dir + "/" + c.name + ".pt";
    Must(trainer->ExportModel(path));
    InferenceOptions io;
    const char* probs = std::getenv("IDLEGRID_BENCH_PROBS");
    io.probabilities = probs != nullptr && std::string(probs) == "1";
    auto model = Must(Model::Load(path, io));
    InferenceResult result = Must(model->PredictVolume(image));
    const Volume& pred = result.labels;
    if (io.probabilities) Must(WriteTiff(dir + "/" + c.name + "_probs.tif", result.probabilities));
    Must(WriteTiff(dir + "/" + c.name + "_labels.tif", pred));
    double dice = MeanDice(pred, truth, fp.num_classes);
    double val = trainer->validation_dice();
    std::printf("candidate %-14s steps %5lld  %6.1f s  validation dice %.4f  true dice %.5f\n",
                c.name.c_str(), static_cast<long long>(trainer->global_step()), seconds, val, dice);
    std::fflush(stdout);
    if (dice > best) best = dice, best_name = c.name;
    if (val > best_val) best_val = val, picked = dice, picked_name = c.name;
  }
  std::printf("summary best %.5f %s picked %.5f %s\n", best, best_name.c_str(), picked, picked_name.c_str());
  return 0;
}

int Denoise(const std::string& dir, double budget, int threads) {
  ConfigureCpuRuntime(threads);
  Volume noisy = Must(ReadTiff(dir + "/noisy.tif"));
  Resources resources;
  resources.threads = threads;
  ModelConfig c = PlanDenoiser(Must(ComputeFingerprint(noisy, nullptr, resources)));
  c.epochs = 100000;  // the budget decides
  c = Overridden(c);
  double seconds = 0;
  auto trainer = TrainWithin(c, noisy, nullptr, budget, &seconds);
  Must(trainer->ExportModel(dir + "/denoiser.pt"));
  auto model = Must(Model::Load(dir + "/denoiser.pt"));
  Must(WriteTiff(dir + "/denoised.tif", Must(model->PredictVolume(noisy)).denoised));
  std::printf("denoiser steps %lld in %.1f s\n", static_cast<long long>(trainer->global_step()), seconds);
  return 0;
}

int Infer(int threads, int side, int filters) {
  ConfigureCpuRuntime(threads);
  ModelConfig c;
  c.architecture = "unet2d";
  c.base_filters = filters;
  c.depth = 2;
  c.num_classes = 2;
  c.patch_y = c.patch_x = 64;
  torch::manual_seed(0);
  torch::nn::AnyModule net = BuildNetwork(c);
  ModuleOf(net)->eval();
  const torch::Tensor image = torch::randn({1, 1, side, side});
  auto seconds = [&](int64_t batch_voxels) {
    PredictOptions po;
    po.tta_views = 4;
    po.batch_voxels = batch_voxels;
    std::vector<double> runs;
    for (int i = 0; i < 5; ++i) {
      const auto t = Clock::now();
      PredictSlices(net, c, image, 0, 0, 1, 1, po);
      runs.push_back(Since(t));
    }
    std::sort(runs.begin(), runs.end());
    return runs[runs.size() / 2];
  };
  const double single = seconds(0), batched = seconds(PredictOptions{}.batch_voxels);
  std::printf("%dx%d slice, unet2d %d filters, 4 views, %d threads: %.3f s one view per call, %.3f s batched\n", side,
              side, filters, threads, single, batched);
  std::printf("RESULT infer_slice_s=%.3f infer_slice_single_view_s=%.3f speedup=%.2f\n", batched, single,
              single / batched);
  return 0;
}

}  // namespace
}  // namespace idlegrid::models

int main(int argc, char** argv) {
  using namespace idlegrid::models;
  std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "train-step" && argc == 9) {
    return TrainStep(std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]),
                     std::atoi(argv[6]), std::atoi(argv[7]), std::atoi(argv[8]));
  }
  if (cmd == "segment" && argc == 6) return Segment(argv[2], argv[3], std::atof(argv[4]), std::atoi(argv[5]));
  if (cmd == "infer" && argc == 5) return Infer(std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]));
  if (cmd == "denoise" && argc == 5) return Denoise(argv[2], std::atof(argv[3]), std::atoi(argv[4]));
  std::fprintf(stderr, "usage: see the comment at the top of bench/models_bench.cc\n");
  return 2;
}
