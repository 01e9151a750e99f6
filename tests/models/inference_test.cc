#include "idlegrid/models/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <catch2/catch.hpp>

#include "idlegrid/models/trainer.h"
#include "model_fixtures.h"
#include "networks.h"
#include "tensors.h"
#include "test_util.h"

namespace idlegrid::models {
namespace {

using testing::SmallSample;
using testing::TempDir;
using testing::TinyConfig;

// A briefly trained model package for `arch`.
std::string TrainedPackage(const std::string& arch, const TempDir& dir) {
  const MaterialsSample& s = SmallSample();
  ModelConfig c = TinyConfig(arch, 1, 3);
  auto t = Trainer::Create(c, s.image, &s.scribbles, {}).value();
  REQUIRE(t->RunUntilEpoch(1, {}).ok());
  std::string path = dir / (arch + ".pt");
  REQUIRE(t->ExportModel(path, R"({"note":"test"})").ok());
  return path;
}

TEST_CASE("tile positions cover the axis from both ends with overlap", "[models][infer]") {
  CHECK(TilePositions(64, 64) == std::vector<int64_t>{0});
  CHECK(TilePositions(30, 64) == std::vector<int64_t>{0});
  std::vector<int64_t> p = TilePositions(100, 32);
  CHECK(p.front() == 0);
  CHECK(p.back() == 68);
  for (size_t i = 1; i < p.size(); ++i) CHECK(p[i] - p[i - 1] <= 16);
}

TEST_CASE("slab-stitched inference equals whole-volume inference", "[models][infer]") {
  TempDir dir;
  const MaterialsSample& s = SmallSample();
  const int64_t depth = s.image.shape().z;
  for (const char* arch : {"unet2d", "unet25d", "unet3d", "dilated2d"}) {
    INFO(arch);
    InferenceOptions options;
    options.probabilities = true;
    auto model = Model::Load(TrainedPackage(arch, dir), options).value();
    CHECK(model->metadata()["note"] == "test");
    CHECK(model->metadata()["history"].size() == 1);
    InferenceResult whole = model->PredictVolume(s.image).value();
    CHECK(whole.labels.shape() == VolumeShape{depth, 64, 64, 1});
    CHECK(whole.probabilities.shape().c == 3);

    Volume labels = Volume::Create(whole.labels.shape(), DType::kUInt8).value();
    Volume probs = Volume::Create(whole.probabilities.shape(), DType::kUInt8).value();
    const int64_t halo = model->config().InferenceHalo();
    for (const SlabRange& slab : PlanSlabs(depth, 5, halo).value()) {
      Volume input = ExtractSlab(s.image, slab).value();
      InferenceResult part = model->Predict(input, slab, depth).value();
      REQUIRE(StitchSlab(part.labels, SlabRange{slab.z_begin, slab.z_end, 0, 0}, &labels).ok());
      REQUIRE(StitchSlab(part.probabilities, SlabRange{slab.z_begin, slab.z_end, 0, 0}, &probs).ok());
    }
    CHECK(labels == whole.labels);
    CHECK(probs == whole.probabilities);
    // Every class appears: the model is not degenerate.
    std::vector<int64_t> counts(4, 0);
    for (int64_t i = 0; i < labels.shape().elements(); ++i) ++counts[labels.data<uint8_t>()[i]];
    CHECK(counts[0] == 0);

    // Too small a halo is refused rather than silently different.
    if (halo > 0 && halo < depth) {
      SlabRange thin{halo, halo + 1, halo - 1, std::min(halo - 1, depth - halo - 1)};
      CHECK(model->Predict(ExtractSlab(s.image, thin).value(), thin, depth).status().code() ==
            StatusCode::kInvalidArgument);
    }
  }
}

TEST_CASE("a streamed prediction holds a window of slices, not the slab, and gives the same output", "[models][infer]") {
  TempDir dir;
  const MaterialsSample& s = SmallSample();
  const VolumeShape& shape = s.image.shape();
  const VolumeShape plane{1, shape.y, shape.x, shape.c};
  for (const char* arch : {"unet2d", "unet25d", "unet3d"}) {
    INFO(arch);
    auto model = Model::Load(TrainedPackage(arch, dir)).value();
    const ModelConfig& c = model->config();
    const int64_t window = IsThreeD(c.architecture) ? c.patch_z : 2 * c.context_slices + 1;
    const InferenceResult whole = model->PredictVolume(s.image).value();
    const SlabRange slab{0, shape.z, 0, 0};  // the whole volume as one slab
    // Every read and write in order: a slice is read once its window reaches it, and every
    // output slice is written before the reads run more than a window (and a tile) ahead.
    std::vector<int64_t> reads;
    int64_t highest_read = -1;
    Volume out = Volume::Create(whole.labels.shape(), DType::kUInt8).value();
    int64_t next = slab.z_begin, lead = 0;
    auto read = [&](int64_t z) -> StatusOr<Volume> {
      reads.push_back(z);
      highest_read = std::max(highest_read, z);
      lead = std::max(lead, highest_read - next);
      return ExtractSlab(s.image, SlabRange{z, z + 1, 0, 0});
    };
    auto write = [&](int64_t first, const InferenceResult& part) {
      CHECK(first == next);
      std::memcpy(out.slice_bytes_at(first), part.labels.bytes(), part.labels.size_bytes());
      next = first + part.labels.shape().z;
      return Status::Ok();
    };
    REQUIRE(model->PredictStreamed(plane, slab, shape.z, read, write).ok());
    CHECK(next == slab.z_end);
    CHECK(out == whole.labels);
    CHECK(lead <= 2 * window);
    // Each slice is normalised once while its window passes (2.5D: clamped context at the
    // ends repeats the edge slices from the cache).
    std::vector<int64_t> sorted = reads;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    CHECK(static_cast<int64_t>(reads.size()) == shape.z);

    // A read that fails ends the prediction with its error; a write that fails, with its own.
    auto bad_read = [&](int64_t z) -> StatusOr<Volume> {
      if (z == shape.z / 2) return DataLossError("slice " + std::to_string(z) + " is cut short");
      return ExtractSlab(s.image, SlabRange{z, z + 1, 0, 0});
    };
    Status st = model->PredictStreamed(plane, slab, shape.z, bad_read, [](int64_t, const InferenceResult&) { return Status::Ok(); });
    CHECK(st.code() == StatusCode::kDataLoss);
    CHECK(st.message().find("cut short") != std::string::npos);
    st = model->PredictStreamed(plane, slab, shape.z, read, [](int64_t, const InferenceResult&) { return IoError("disk full"); });
    CHECK(st.code() == StatusCode::kIoError);
    // A reader that answers with the wrong shape is caught before the network sees it.
    auto wrong = [&](int64_t) { return Volume::Create({1, shape.y, shape.x - 8, 1}, DType::kUInt16); };
    st = model->PredictStreamed(plane, slab, shape.z, wrong, write);
    CHECK(st.code() == StatusCode::kDataLoss);
    CHECK(st.message().find("input slice") != std::string::npos);
  }
}

TEST_CASE("slab probabilities match the whole volume's to 1e-5", "[models][infer]") {
  const MaterialsSample& s = SmallSample();
  for (const char* arch : {"unet25d", "unet3d"}) {
    INFO(arch);
    ModelConfig c = TinyConfig(arch);
    torch::manual_seed(3);
    torch::nn::AnyModule net = BuildNetwork(c);
    ModuleOf(net)->eval();
    torch::Tensor image = NormalizedTensor(s.image, c.norm);
    const int64_t depth = image.size(0), halo = c.InferenceHalo();
    torch::Tensor whole = PredictSlices(net, c, image, 0, 0, depth, depth);
    for (const SlabRange& slab : PlanSlabs(depth, 4, halo).value()) {
      torch::Tensor in = image.slice(0, slab.read_begin(), slab.read_end());
      torch::Tensor part = PredictSlices(net, c, in, slab.read_begin(), slab.z_begin, slab.z_end, depth);
      double diff = (part - whole.slice(0, slab.z_begin, slab.z_end)).abs().max().item<double>();
      CHECK(diff <= 1e-5);
    }
  }
}

TEST_CASE("test-time augmentation averages the flips, or all eight symmetries of the square", "[models][infer]") {
  ModelConfig c = TinyConfig("unet2d");
  c.patch_y = c.patch_x = 16;
  torch::manual_seed(5);
  torch::nn::AnyModule net = BuildNetwork(c);
  ModuleOf(net)->eval();
  torch::NoGradGuard no_grad;
  // One tile (16 x 16, the patch) so the average is over whole-image transforms.
  torch::Tensor image = torch::randn({1, 1, 16, 16});
  auto plain = [&](const torch::Tensor& x) { return torch::softmax(net.forward(x), 1); };
  std::vector<torch::Tensor> views;
  for (bool t : {false, true}) {
    torch::Tensor x = t ? image.transpose(2, 3).contiguous() : image;
    for (std::vector<int64_t> dims : {std::vector<int64_t>{}, {3}, {2}, {2, 3}}) {
      torch::Tensor out = dims.empty() ? plain(x) : plain(x.flip(dims)).flip(dims);
      views.push_back(t ? out.transpose(2, 3) : out);
    }
  }
  torch::Tensor four = (views[0] + views[1] + views[2] + views[3]) / 4;
  torch::Tensor eight = torch::stack(views).mean(0);
  PredictOptions po;
  auto predict = [&](int n) {
    po.tta_views = n;
    return PredictSlices(net, c, image, 0, 0, 1, 1, po);  // [1, K, 16, 16]
  };
  CHECK((predict(1) - views[0]).abs().max().item<double>() <= 1e-6);
  CHECK((predict(4) - four).abs().max().item<double>() <= 1e-6);
  CHECK((predict(8) - eight).abs().max().item<double>() <= 1e-6);
  CHECK((four - eight).abs().max().item<double>() > 1e-3);  // an untrained net is not symmetric
}

TEST_CASE("self-supervised denoising raises PSNR without clean data", "[models][denoise]") {
  // A piecewise-smooth image with Gaussian noise (sigma 0.1 of the range).
  const int64_t n = 96;
  Volume clean = Volume::Create({2, n, n, 1}, DType::kFloat32).value();
  Volume noisy = Volume::Create({2, n, n, 1}, DType::kFloat32).value();
  std::mt19937_64 rng(5);
  std::normal_distribution<float> noise(0.0f, 0.1f);
  for (int64_t z = 0; z < 2; ++z)
    for (int64_t y = 0; y < n; ++y)
      for (int64_t x = 0; x < n; ++x) {
        float v = 0.3f + 0.4f * ((x / 24 + y / 24 + z) % 2) + 0.2f * std::sin(0.1f * static_cast<float>(x + y));
        clean.at<float>(z, y, x) = v;
        noisy.at<float>(z, y, x) = v + noise(rng);
      }
  auto psnr = [&](const Volume& v) {
    double mse = 0;
    for (int64_t i = 0; i < v.shape().elements(); ++i) {
      double d = v.data<float>()[i] - clean.data<float>()[i];
      mse += d * d;
    }
    mse /= static_cast<double>(v.shape().elements());
    return 10 * std::log10(1.0 / mse);
  };
  ConfigureCpuRuntime(1);
  DataFingerprint fp = ComputeFingerprint(noisy, nullptr, {}).value();
  ModelConfig c = PlanDenoiser(fp);
  c.base_filters = 16;
  c.depth = 2;
  c.patch_y = c.patch_x = 64;
  c.batch_size = 4;
  c.epochs = 6;
  c.steps_per_epoch = 25;
  c.learning_rate = 2e-3;
  REQUIRE(c.Validate().ok());
  auto t = Trainer::Create(c, noisy, nullptr, {}).value();
  REQUIRE(t->RunUntilEpoch(c.epochs, {}).ok());
  TempDir dir;
  REQUIRE(t->ExportModel(dir / "denoise.pt").ok());
  auto model = Model::Load(dir / "denoise.pt").value();
  InferenceResult r = model->PredictVolume(noisy).value();
  double before = psnr(noisy), after = psnr(r.denoised);
  INFO("PSNR " << before << " -> " << after);
  CHECK(after > before + 3.0);
}

TEST_CASE("a prediction reports its progress tile by tile and stops between two tiles", "[models][infer]") {
  TempDir dir;
  const MaterialsSample& s = SmallSample();
  for (const char* arch : {"unet2d", "unet3d"}) {
    INFO(arch);
    auto model = Model::Load(TrainedPackage(arch, dir)).value();
    const InferenceResult whole = model->PredictVolume(s.image).value();
    std::vector<double> fractions;
    PredictHooks watch;
    watch.on_progress = [&](double f) { fractions.push_back(f); };
    const InferenceResult watched = model->PredictVolume(s.image, watch).value();
    CHECK(watched.labels == whole.labels);  // watching changes nothing
    REQUIRE(fractions.size() >= 2);  // the 3D net's two tiles (12 slices, 8 deep), 12 slices of one 2D tile
    CHECK(fractions.back() == 1.0);
    for (size_t i = 1; i < fractions.size(); ++i) CHECK(fractions[i] > fractions[i - 1]);

    // A stop asked after the first tile: no second tile runs, and no result comes back.
    size_t tiles = 0;
    PredictHooks stop;
    stop.on_progress = [&](double) { ++tiles; };
    stop.should_stop = [&] { return tiles >= 1; };
    StatusOr<InferenceResult> stopped = model->PredictVolume(s.image, stop);
    CHECK(stopped.status().code() == StatusCode::kCancelled);
    CHECK(tiles == 1);
  }
  // A stop asked after the last tile comes when the work is done: the result stands. (One
  // slice of 64 px is one tile for the 2D net.)
  auto model = Model::Load(TrainedPackage("unet2d", dir)).value();
  const SlabRange one{5, 6, 0, 0};
  PredictHooks always;
  always.should_stop = [] { return true; };
  StatusOr<InferenceResult> late = model->Predict(ExtractSlab(s.image, one).value(), one, s.image.shape().z, always);
  REQUIRE(late.ok());
  CHECK(late->labels == ExtractSlab(model->PredictVolume(s.image).value().labels, one).value());
}

TEST_CASE("model packages that are corrupt or foreign are refused", "[models][infer]") {
  TempDir dir;
  testing::Spit(dir / "junk.pt", "nope");
  CHECK(Model::Load(dir / "junk.pt").status().code() == StatusCode::kDataLoss);
  std::string good = TrainedPackage("unet2d", dir);
  std::string bytes = testing::Slurp(good);
  testing::Spit(dir / "cut.pt", bytes.substr(0, bytes.size() - 100));
  CHECK(Model::Load(dir / "cut.pt").status().code() == StatusCode::kDataLoss);
  auto model = Model::Load(good).value();
  Volume two_channels = Volume::Create({3, 64, 64, 2}, DType::kUInt16).value();
  CHECK(model->PredictVolume(two_channels).status().code() == StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace idlegrid::models
