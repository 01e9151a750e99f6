#include "idlegrid/models/trainer.h"

#include <catch2/catch.hpp>

#include "idlegrid/models/config_json.h"
#include "model_fixtures.h"
#include "networks.h"
#include "test_util.h"
#include "training_ops.h"

namespace idlegrid::models {
namespace {

using testing::SmallSample;
using testing::TempDir;
using testing::TinyConfig;

std::unique_ptr<Trainer> MakeTrainer(const ModelConfig& c, uint64_t seed = 7) {
  const MaterialsSample& s = SmallSample();
  TrainerOptions o;
  o.seed = seed;
  StatusOr<std::unique_ptr<Trainer>> t = Trainer::Create(c, s.image, &s.scribbles, o);
  REQUIRE(t.ok());
  return std::move(t).value();
}

TEST_CASE("every architecture learns: the loss falls within a few steps", "[models][train]") {
  for (const char* arch : {"unet2d", "unet25d", "unet3d", "dilated2d"}) {
    INFO(arch);
    ModelConfig c = TinyConfig(arch, 1, 40);
    c.augment = "none";  // a clean signal of learning
    c.learning_rate = 3e-3;
    auto t = MakeTrainer(c);
    std::vector<double> losses;
    Trainer::Hooks hooks;
    hooks.on_step = [&](const StepInfo& s) { losses.push_back(s.loss); };
    REQUIRE(t->RunUntilEpoch(1, hooks).ok());
    REQUIRE(losses.size() == 40);
    double first = (losses[0] + losses[1] + losses[2] + losses[3] + losses[4]) / 5;
    double last = (losses[35] + losses[36] + losses[37] + losses[38] + losses[39]) / 5;
    CHECK(last < 0.8 * first);
    // Validation ran on held-out strokes and scored every class.
    REQUIRE(t->history().size() == 1);
    CHECK(t->history()[0].dice.size() == 3);
    CHECK(t->history()[0].mean_dice > 0);
    CHECK(t->validation_voxels() > 0);
    CHECK(t->train_voxels() > t->validation_voxels());
  }
}

TEST_CASE("unlabelled voxels do not contribute to the loss or its gradient", "[models][train]") {
  torch::manual_seed(0);
  torch::Tensor logits = torch::randn({2, 3, 8, 8}, torch::requires_grad());
  torch::Tensor target = torch::zeros({2, 8, 8}, torch::kLong);
  target.index_put_({0, torch::indexing::Slice(0, 3), torch::indexing::Slice()}, 1);
  target.index_put_({1, 5, torch::indexing::Slice(2, 6)}, 3);
  target.index_put_({1, 7, 7}, 2);
  torch::Tensor loss = SparseSegmentationLoss(logits, target, torch::Tensor());
  loss.backward();
  torch::Tensor grad_norm = logits.grad().abs().sum(1);  // [2, 8, 8]
  torch::Tensor unlabelled = target == 0;
  CHECK(grad_norm.masked_select(unlabelled).max().item<float>() == 0.0f);
  CHECK(grad_norm.masked_select(~unlabelled).min().item<float>() > 0.0f);
  // Changing the predictions where nothing is labelled changes nothing.
  torch::Tensor other = logits.detach().clone();
  other.masked_fill_(unlabelled.unsqueeze(1).expand_as(other), 42.0);
  CHECK(SparseSegmentationLoss(other, target, torch::Tensor()).item<double>() ==
        Approx(loss.item<double>()).epsilon(1e-6));
  // Class weights change the loss.
  torch::Tensor w = torch::tensor({1.0f, 5.0f, 1.0f});
  CHECK(SparseSegmentationLoss(logits.detach(), target, w).item<double>() != Approx(loss.item<double>()));
}

TEST_CASE("a Dice weight of 0 leaves the class-weighted cross-entropy alone", "[models][train]") {
  torch::manual_seed(1);
  torch::Tensor logits = torch::randn({2, 3, 8, 8});
  torch::Tensor target = torch::randint(0, 4, {2, 8, 8}, torch::kLong);  // 0 = unlabelled
  torch::Tensor w = torch::tensor({0.5f, 2.0f, 1.0f});
  auto ce = torch::nn::functional::cross_entropy(
      logits, target - 1, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-1).weight(w));
  CHECK(SparseSegmentationLoss(logits, target, w, 0.0).item<double>() == Approx(ce.item<double>()).epsilon(1e-6));
  const double with_dice = SparseSegmentationLoss(logits, target, w, 1.0).item<double>();
  const double half_dice = SparseSegmentationLoss(logits, target, w, 0.5).item<double>();
  CHECK(with_dice > ce.item<double>());
  CHECK(half_dice == Approx((with_dice + ce.item<double>()) / 2).epsilon(1e-6));
}

TEST_CASE("the denoiser's consistency weight gamma reaches its loss, linearly", "[models][train]") {
  // The first step's loss is taken before any update, from the same seed, so it differs
  // between the three trainers only through gamma: rec + gamma * consistency.
  const MaterialsSample& s = testing::SmallSample();
  ModelConfig c = testing::TinyDenoiserConfig();
  auto first_loss = [&](double gamma) {
    c.n2n_gamma = gamma;
    auto t = Trainer::Create(c, s.image, nullptr, {}).value();
    return t->Step().value().loss;
  };
  const double none = first_loss(0), one = first_loss(1), two = first_loss(2);
  CHECK(two > none);
  CHECK(one == Approx((none + two) / 2).epsilon(1e-5));
}

TEST_CASE("the denoiser's consistency term looks at the first quarter of the batch alone", "[models][train]") {
  // rec + gamma * consistency, from the same generator seed each time: the consistency part
  // (loss at gamma 1 minus loss at gamma 0) must move when a patch of the first quarter
  // changes and stay put when only a later patch does. No batch norm: samples independent.
  ModelConfig c = testing::TinyDenoiserConfig();
  REQUIRE(c.norm_layer == "none");
  torch::manual_seed(4);
  torch::nn::AnyModule net = BuildNetwork(c);
  torch::Tensor batch = torch::randn({8, 1, 16, 16});
  auto consistency = [&](const torch::Tensor& x) {
    at::Generator g0 = at::make_generator<at::CPUGeneratorImpl>(9);
    at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(9);
    return Neighbor2NeighborLoss(net, x, 1.0, g1).item<double>() -
           Neighbor2NeighborLoss(net, x, 0.0, g0).item<double>();
  };
  const double base = consistency(batch);
  CHECK(base > 0);
  torch::Tensor later = batch.clone();
  later[7] = torch::randn({1, 16, 16});  // patches 2..7 only feed the reconstruction term
  CHECK(consistency(later) == Approx(base).epsilon(1e-6));
  torch::Tensor first = batch.clone();
  first[0] = torch::randn({1, 16, 16});
  CHECK(consistency(first) != Approx(base).epsilon(1e-3));
}

TEST_CASE("augmentation levels: none, flips only, 90-degree rotations, full", "[models][train]") {
  // An image whose value names its pixel: every output must be one of the allowed
  // rearrangements of it, and the labels must move with the image.
  torch::Tensor base = torch::arange(16 * 16, torch::kFloat32).view({1, 16, 16});
  torch::Tensor base_labels = torch::arange(16 * 16, torch::kLong).view({16, 16});
  auto flips = [&](const torch::Tensor& t, int64_t h, int64_t w) {
    return std::vector<torch::Tensor>{t, t.flip({w}), t.flip({h}), t.flip({h, w})};
  };
  auto count_matching = [&](const std::string& level, const std::vector<torch::Tensor>& allowed) {
    std::mt19937_64 rng(3);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
    int matching = 0;
    bool transposed_seen = false;
    for (int i = 0; i < 64; ++i) {
      torch::Tensor img = base.clone(), lab = base_labels.clone();
      Augment(img, lab, rng, gen, level, /*intensity=*/true);
      bool any = false;
      for (const torch::Tensor& a : allowed) any = any || torch::equal(img, a);
      matching += any;
      CHECK(torch::equal(img[0].to(torch::kLong), lab));  // labels follow the image exactly
      // Transposed variants: what only rotations by 90 or 270 degrees produce.
      for (const torch::Tensor& a : flips(base.transpose(1, 2), 1, 2)) transposed_seen |= torch::equal(img, a);
    }
    return std::make_pair(matching, transposed_seen);
  };
  auto none = count_matching("none", {base});
  CHECK(none.first == 64);
  auto fl = count_matching("flips", flips(base, 1, 2));
  CHECK(fl.first == 64);
  CHECK_FALSE(fl.second);
  std::vector<torch::Tensor> dihedral = flips(base, 1, 2);
  for (const torch::Tensor& t : flips(base.transpose(1, 2), 1, 2)) dihedral.push_back(t);
  auto rot = count_matching("rot90", dihedral);
  CHECK(rot.first == 64);
  CHECK(rot.second);
  // "full" resamples and changes intensities: some draws leave the dihedral group.
  std::mt19937_64 rng(3);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  int outside = 0;
  for (int i = 0; i < 64; ++i) {
    torch::Tensor img = base.clone(), lab = base_labels.clone();
    Augment(img, lab, rng, gen, "full", /*intensity=*/true);
    bool any = false;
    for (const torch::Tensor& a : dihedral) any = any || torch::equal(img, a);
    outside += !any;
  }
  CHECK(outside > 10);
}

// Trains from scratch to the end, stopping and resuming from a checkpoint (in a new Trainer,
// as a new process would) after each of `stops` (global step counts).
std::string TrainWithInterruptions(const ModelConfig& c, const std::vector<int64_t>& stops,
                                   const std::string& dir, std::vector<EpochMetrics>* history) {
  auto t = MakeTrainer(c);
  size_t next = 0;
  for (int round = 0; round < 10; ++round) {
    Trainer::Hooks hooks;
    hooks.should_stop = [&] { return next < stops.size() && t->global_step() >= stops[next]; };
    Status st = t->RunUntilEpoch(c.epochs, hooks);
    if (st.ok()) break;
    REQUIRE(st.code() == StatusCode::kCancelled);
    ++next;
    REQUIRE(t->SaveCheckpoint(dir + "/ck.pt").ok());
    t = MakeTrainer(c);  // a fresh process: nothing carried over but the file
    REQUIRE(t->LoadCheckpoint(dir + "/ck.pt").ok());
  }
  CHECK(t->epoch() == c.epochs);
  *history = t->history();
  return t->WeightsDigest();
}

TEST_CASE("training resumed from checkpoints is bit-identical", "[models][train]") {
  TempDir dir;
  for (const char* arch : {"unet2d", "unet3d"}) {
    INFO(arch);
    ModelConfig c = TinyConfig(arch, 3, 4);  // augmentation on: every RNG matters
    std::vector<EpochMetrics> h0, h1, h3;
    std::string straight = TrainWithInterruptions(c, {}, dir.path(), &h0);
    std::string once = TrainWithInterruptions(c, {6}, dir.path(), &h1);           // mid-epoch
    std::string thrice = TrainWithInterruptions(c, {2, 4, 9}, dir.path(), &h3);   // incl. boundary
    CHECK(once == straight);
    CHECK(thrice == straight);
    REQUIRE(h1.size() == h0.size());
    for (size_t i = 0; i < h0.size(); ++i) {
      CHECK(h1[i].train_loss == h0[i].train_loss);
      CHECK(h3[i].dice == h0[i].dice);
    }
    // A different seed is a different run (the check above can fail).
    auto other = MakeTrainer(c, 8);
    REQUIRE(other->RunUntilEpoch(c.epochs, {}).ok());
    CHECK(other->WeightsDigest() != straight);
  }
}

TEST_CASE("a stop during validation changes nothing, and training resumes bit-identical", "[models][train]") {
  TempDir dir;
  for (const char* arch : {"unet2d", "unet3d"}) {
    INFO(arch);
    ModelConfig c = TinyConfig(arch, 2, 3);
    c.patch_y = c.patch_x = 16;  // validation tiles of 32 px: several over the held-out strokes
    auto straight = MakeTrainer(c);
    REQUIRE(straight->validation_voxels() > 0);
    REQUIRE(straight->RunUntilEpoch(c.epochs, {}).ok());

    // The first epoch's steps are done, so the next question comes from inside validation
    // (tiles over the held-out strokes take seconds on a large slice).
    auto t = MakeTrainer(c);
    int asked_in_validation = 0;
    Trainer::Hooks hooks;
    hooks.should_stop = [&] { return t->EpochStepsDone() && ++asked_in_validation == 1; };
    Status st = t->RunUntilEpoch(c.epochs, hooks);
    CHECK(st.code() == StatusCode::kCancelled);
    CHECK(asked_in_validation == 1);
    CHECK(t->epoch() == 0);  // the epoch is not recorded half-validated
    CHECK(t->history().empty());
    CHECK(t->EpochStepsDone());
    REQUIRE(t->SaveCheckpoint(dir / "ck.pt").ok());

    auto resumed = MakeTrainer(c);  // a fresh process: nothing carried over but the file
    REQUIRE(resumed->LoadCheckpoint(dir / "ck.pt").ok());
    CHECK(resumed->EpochStepsDone());
    REQUIRE(resumed->RunUntilEpoch(c.epochs, {}).ok());
    CHECK(resumed->WeightsDigest() == straight->WeightsDigest());
    REQUIRE(resumed->history().size() == straight->history().size());
    for (size_t i = 0; i < straight->history().size(); ++i) {
      CHECK(resumed->history()[i].dice == straight->history()[i].dice);
      CHECK(resumed->history()[i].train_loss == straight->history()[i].train_loss);
    }
  }
}

TEST_CASE("refit epochs train on the held-out strokes too and validate nothing", "[models][train]") {
  TempDir dir;
  ModelConfig c = TinyConfig("unet2d", 4, 3);
  c.refit_fraction = 0.5;  // epochs 3 and 4
  REQUIRE(c.RefitFrom() == 2);
  ModelConfig held = c;
  held.refit_fraction = 0;  // the strokes stay out to the end
  ModelConfig first = held;
  first.epochs = 2;
  auto t = MakeTrainer(c);
  auto h = MakeTrainer(held);
  auto f = MakeTrainer(first);
  REQUIRE(t->validation_voxels() > 0);
  REQUIRE(t->RunUntilEpoch(2, {}).ok());
  REQUIRE(f->RunUntilEpoch(2, {}).ok());
  // Until the refit, the chain is a whole two-epoch chain on the training strokes, learning
  // rate schedule included, so its validation scores a finished model.
  CHECK(t->WeightsDigest() == f->WeightsDigest());
  CHECK(t->history()[1].mean_dice == f->history()[1].mean_dice);
  REQUIRE(t->RunUntilEpoch(4, {}).ok());
  REQUIRE(h->RunUntilEpoch(4, {}).ok());
  CHECK(t->WeightsDigest() != h->WeightsDigest());
  const std::vector<EpochMetrics>& history = t->history();
  REQUIRE(history.size() == 4);
  CHECK(history[1].mean_dice > 0);
  CHECK(history[1].dice.size() == 3);
  for (size_t e : {size_t{2}, size_t{3}}) {
    CHECK(history[e].mean_dice == -1);
    CHECK(history[e].dice.empty());
  }
  CHECK(t->validation_dice() == history[1].mean_dice);  // the last score on unseen strokes
  CHECK(h->validation_dice() == h->history()[3].mean_dice);
  // Resuming inside a refit epoch is bit-identical too.
  std::vector<EpochMetrics> resumed;
  CHECK(TrainWithInterruptions(c, {7}, dir.path(), &resumed) == t->WeightsDigest());
  // With none held out there is nothing to refit: same schedule, same weights as without.
  c.validation_fraction = held.validation_fraction = 0;
  auto t0 = MakeTrainer(c);
  auto h0 = MakeTrainer(held);
  REQUIRE(t0->RunUntilEpoch(4, {}).ok());
  REQUIRE(h0->RunUntilEpoch(4, {}).ok());
  CHECK(t0->WeightsDigest() == h0->WeightsDigest());
  CHECK(t0->validation_dice() == -1);
}

TEST_CASE("checkpoints of another configuration or corrupt files are refused", "[models][train]") {
  TempDir dir;
  ModelConfig c = TinyConfig("unet2d", 1, 2);
  auto t = MakeTrainer(c);
  REQUIRE(t->Step().ok());
  REQUIRE(t->SaveCheckpoint(dir / "ck.pt").ok());
  ModelConfig other = c;
  other.learning_rate = 5e-4;
  auto t2 = MakeTrainer(other);
  CHECK(t2->LoadCheckpoint(dir / "ck.pt").code() == StatusCode::kFailedPrecondition);
  std::string bytes = testing::Slurp(dir / "ck.pt");
  testing::Spit(dir / "bad.pt", bytes.substr(0, bytes.size() / 2));
  CHECK(t2->LoadCheckpoint(dir / "bad.pt").code() == StatusCode::kDataLoss);
  testing::Spit(dir / "junk.pt", "not a checkpoint");
  CHECK(t2->LoadCheckpoint(dir / "junk.pt").code() == StatusCode::kDataLoss);
  CHECK(t2->LoadCheckpoint(dir / "absent.pt").code() == StatusCode::kDataLoss);
}

// Labels on two slices far apart (the sample's scribbles, copied), in a volume deep enough
// that even the 3D U-Net's crop leaves slices out.
struct TwoSliceSample {
  Volume image, labels;
};
const TwoSliceSample& DeepSample() {
  static const TwoSliceSample sample = [] {
    SampleOptions o;
    o.shape = {40, 64, 64, 1};
    o.grains = 10;
    o.pores = 30;  // enough that the scribbled slice shows every phase
    o.inclusions = 40;
    o.labelled_pixels = 3000;
    o.brush_radius = 2;
    MaterialsSample m = GenerateMaterialsSample(o).value();
    TwoSliceSample t{m.image, Volume::Create(m.truth.shape(), DType::kUInt8).value()};
    for (int64_t z : {3, 30}) {
      std::memcpy(t.labels.slice_bytes_at(z), m.scribbles.slice_bytes_at(m.label_slice), m.scribbles.slice_bytes());
    }
    return t;
  }();
  return sample;
}

// Trains `c` (seed 5) on image and labels as a crop of `region` (no runs: the whole
// volume) to its last epoch; the weights' digest, and the history in *history.
std::string TrainedDigest(const ModelConfig& c, const Volume& image, const Volume& labels, const SliceRegion& region,
                          std::vector<EpochMetrics>* history) {
  TrainerOptions o;
  o.seed = 5;
  o.region = region;
  auto t = Trainer::Create(c, image, &labels, o);
  INFO(t.status().ToString());
  REQUIRE(t.ok());
  REQUIRE((*t)->RunUntilEpoch(c.epochs, {}).ok());
  *history = (*t)->history();
  return (*t)->WeightsDigest();
}

TEST_CASE("training on a crop of the labelled slices equals training on the whole volume, bit for bit", "[models][train]") {
  const TwoSliceSample& s = DeepSample();
  StatusOr<DataFingerprint> measured = ComputeFingerprint(s.image, &s.labels, {});
  INFO(measured.status().ToString());
  REQUIRE(measured.ok());
  const DataFingerprint& fp = *measured;
  REQUIRE(fp.labelled_z == std::vector<int64_t>{3, 30});
  for (const char* arch : {"unet2d", "unet25d", "unet3d", "dilated2d"}) {
    INFO(arch);
    ModelConfig c = TinyConfig(arch, 2, 3);
    c.validation_fraction = 0.2;  // both epochs validate (on both slices)
    c.refit_fraction = 0;
    const SliceRegion region = TrainingRegion(c, fp);
    REQUIRE(region.slices() < s.image.shape().z);  // the crop leaves slices out
    CHECK(region.runs.size() == 2);
    auto run = [&](const Volume& image, const Volume& labels, const SliceRegion& r, std::vector<EpochMetrics>* h) {
      return TrainedDigest(c, image, labels, r, h);
    };
    std::vector<EpochMetrics> whole_h, crop_h;
    const std::string whole = run(s.image, s.labels, {}, &whole_h);
    const std::string crop = run(ExtractRegion(s.image, region).value(), ExtractRegion(s.labels, region).value(),
                                 region, &crop_h);
    CHECK(crop == whole);
    REQUIRE(crop_h.size() == whole_h.size());
    for (size_t i = 0; i < whole_h.size(); ++i) {
      CHECK(crop_h[i].train_loss == whole_h[i].train_loss);
      CHECK(crop_h[i].dice == whole_h[i].dice);
      CHECK(crop_h[i].mean_dice >= 0);  // validated
    }
  }
}

TEST_CASE("a time point of a series trains as that volume alone: context never crosses time points", "[models][train]") {
  // Three time points of 40 slices; the labelled one is the middle, between two others that
  // differ (the same volume upside down): anything read across a time point's ends would
  // change the weights. Labelled slice 3 is near its time point's start, where a 3D patch
  // and 2.5D context are clamped.
  const TwoSliceSample& s = DeepSample();
  const int64_t d = s.image.shape().z;
  VolumeShape shape = s.image.shape();
  shape.z = 3 * d;
  Volume image = Volume::Create(shape, s.image.dtype()).value(), labels = Volume::Create(shape, DType::kUInt8).value();
  for (int64_t z = 0; z < d; ++z) {
    std::memcpy(image.slice_bytes_at(z), s.image.slice_bytes_at(d - 1 - z), s.image.slice_bytes());
    std::memcpy(image.slice_bytes_at(d + z), s.image.slice_bytes_at(z), s.image.slice_bytes());
    std::memcpy(image.slice_bytes_at(2 * d + z), s.image.slice_bytes_at(d - 1 - z), s.image.slice_bytes());
    std::memcpy(labels.slice_bytes_at(d + z), s.labels.slice_bytes_at(z), s.labels.slice_bytes());
  }
  DataFingerprint fp = ComputeFingerprint(image, &labels, {}).value(), alone = ComputeFingerprint(s.image, &s.labels, {}).value();
  fp.frames = 3;
  for (const char* arch : {"unet25d", "unet3d"}) {
    INFO(arch);
    ModelConfig c = TinyConfig(arch, 2, 3);
    c.validation_fraction = 0.2;
    c.refit_fraction = 0;
    const SliceRegion region = TrainingRegion(c, fp), own = TrainingRegion(c, alone);
    CHECK(region.frames == 3);
    REQUIRE(region.runs.size() == own.runs.size());
    for (size_t i = 0; i < own.runs.size(); ++i) {
      CHECK(region.runs[i] == std::make_pair(own.runs[i].first + d, own.runs[i].second + d));  // inside time point 1
    }
    auto run = [&](const Volume& im, const Volume& lab, const SliceRegion& r) {
      std::vector<EpochMetrics> h;
      const std::string digest = TrainedDigest(c, im, lab, r, &h);
      CHECK(h.back().mean_dice >= 0);
      return digest;
    };
    CHECK(run(ExtractRegion(image, region).value(), ExtractRegion(labels, region).value(), region) ==
          run(s.image, s.labels, {}));
  }
}

TEST_CASE("a crop that lacks the context a labelled slice needs is refused", "[models][train]") {
  const TwoSliceSample& s = DeepSample();
  ModelConfig c = TinyConfig("unet25d", 1, 1);
  const SliceRegion thin = SliceRegion::Around({3, 30}, 0, 40);  // the labelled slices alone
  TrainerOptions o;
  o.region = thin;
  const Volume thin_labels = ExtractRegion(s.labels, thin).value();
  auto t = Trainer::Create(c, ExtractRegion(s.image, thin).value(), &thin_labels, o);
  CHECK_THAT(t.status().message(), Catch::Contains("lacks slice 1, which labelled slice 3 needs"));
  o.region = SliceRegion::Around({3, 30}, 2, 40);
  CHECK_THAT(Trainer::Create(c, s.image, &s.labels, o).status().message(), Catch::Contains("the image has 40 slices, its region 10"));
}

TEST_CASE("bad training input is refused before anything runs", "[models][train]") {
  const MaterialsSample& s = SmallSample();
  ModelConfig c = TinyConfig("unet2d");
  Volume wrong = Volume::Create({12, 60, 64, 1}, DType::kUInt8).value();
  CHECK(Trainer::Create(c, s.image, &wrong, {}).status().message().find("do not match") != std::string::npos);
  CHECK(Trainer::Create(c, s.image, nullptr, {}).status().message().find("needs labels") != std::string::npos);
  ModelConfig big = c;
  big.patch_y = big.patch_x = 128;
  CHECK(Trainer::Create(big, s.image, &s.scribbles, {}).status().message().find("smaller than a patch") !=
        std::string::npos);
  ModelConfig unknown = c;
  unknown.architecture = "resnet";
  CHECK(Trainer::Create(unknown, s.image, &s.scribbles, {}).status().message().find("unknown architecture") !=
        std::string::npos);
}

}  // namespace
}  // namespace idlegrid::models

namespace idlegrid::models {
namespace {

TEST_CASE("fine-tuning starts from a model package's weights", "[models][train]") {
  TempDir dir;
  ModelConfig c = testing::TinyConfig("unet2d", 1, 4);
  auto first = MakeTrainer(c, 3);
  REQUIRE(first->RunUntilEpoch(1, {}).ok());
  REQUIRE(first->ExportModel(dir / "chosen.pt").ok());
  // The same configuration, more epochs and another seed: starts exactly at those weights.
  ModelConfig more = c;
  more.epochs = 2;
  auto tuned = MakeTrainer(more, 9);
  const std::string fresh = tuned->WeightsDigest();
  REQUIRE(tuned->InitializeFrom(dir / "chosen.pt").ok());
  CHECK(tuned->WeightsDigest() == first->WeightsDigest());
  CHECK(tuned->WeightsDigest() != fresh);
  REQUIRE(tuned->RunUntilEpoch(1, {}).ok());
  CHECK(tuned->WeightsDigest() != first->WeightsDigest());
  // Only before training, only the same network shape, only real packages.
  CHECK(tuned->InitializeFrom(dir / "chosen.pt").code() == StatusCode::kFailedPrecondition);
  ModelConfig other = c;
  other.base_filters = 16;
  CHECK(MakeTrainer(other)->InitializeFrom(dir / "chosen.pt").code() == StatusCode::kFailedPrecondition);
  testing::Spit(dir / "junk.pt", "not a model");
  CHECK(MakeTrainer(c)->InitializeFrom(dir / "junk.pt").code() == StatusCode::kDataLoss);
}

}  // namespace
}  // namespace idlegrid::models
