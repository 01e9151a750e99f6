#include "idlegrid/models/strategy.h"

#include <random>
#include <set>
#include <vector>

#include <catch2/catch.hpp>

#include "idlegrid/models/config_json.h"
#include "model_fixtures.h"

namespace idlegrid::models {
namespace {

using testing::SmallSample;

TEST_CASE("the fingerprint measures intensities and labels", "[strategy]") {
  const MaterialsSample& s = SmallSample();
  DataFingerprint fp = ComputeFingerprint(s.image, &s.scribbles, {}).value();
  CHECK(fp.num_classes == 3);
  CHECK(fp.labelled_per_class.size() == 3);
  CHECK(fp.labelled_slices == 1);
  CHECK(fp.p005 < fp.mean);
  CHECK(fp.mean < fp.p995);
  CHECK(fp.std > 0);
}

TEST_CASE("a fingerprint from a sample of slices reads only those, and close to the whole", "[strategy]") {
  const MaterialsSample& s = SmallSample();  // 12 slices of 64 x 64, uint16
  const DataFingerprint whole = ComputeFingerprint(s.image, &s.scribbles, {}).value();
  CHECK(whole.labelled_z == std::vector<int64_t>{s.label_slice});
  // Everything fits: every slice is sampled, and the numbers are ComputeFingerprint's.
  const std::vector<int64_t> all = SampleSlices(s.image.shape(), s.image.dtype(), kFingerprintSampleBytes);
  CHECK(all.size() == 12);
  // Five slices' worth: 0, 2, 5, 8, 11 (ends included), read in runs no longer than asked.
  const std::vector<int64_t> five = SampleSlices(s.image.shape(), s.image.dtype(), 5 * 64 * 64 * 2);
  CHECK(five == std::vector<int64_t>{0, 2, 5, 8, 11});
  for (const auto* sampled : {&all, &five}) {
    FingerprintBuilder b(s.image.shape(), s.image.dtype(), *sampled);
    std::vector<int64_t> read;
    REQUIRE(b.AddSampledImage(
                 [&](int64_t z0, int64_t z1) {
                   for (int64_t z = z0; z < z1; ++z) read.push_back(z);
                   return ExtractSlab(s.image, SlabRange{z0, z1, 0, 0});
                 },
                 4)
                .ok());
    CHECK(read == *sampled);
    REQUIRE(b.AddLabels(s.scribbles, 0).ok());
    const DataFingerprint fp = b.Finish({}, true).value();
    CHECK(fp.labelled_per_class == whole.labelled_per_class);
    CHECK(fp.labelled_z == whole.labelled_z);
    if (sampled == &all) {
      CHECK(fp.p005 == whole.p005);
      CHECK(fp.p995 == whole.p995);
      CHECK(fp.mean == whole.mean);
    } else {
      CHECK(fp.mean == Approx(whole.mean).epsilon(0.05));
      CHECK(fp.std == Approx(whole.std).epsilon(0.1));
    }
  }
  // Labels that end early or of another shape are named.
  FingerprintBuilder b(s.image.shape(), s.image.dtype(), all);
  REQUIRE(b.AddImage(s.image, 0).ok());
  REQUIRE(b.AddLabels(ExtractSlab(s.scribbles, SlabRange{0, 5, 0, 0}).value(), 0).ok());
  CHECK_THAT(b.Finish({}, true).status().message(), Catch::Contains("labels have 5 slices, the image 12"));
}

TEST_CASE("the fingerprint estimates Gaussian noise, and edges count little", "[strategy]") {
  // Two flat phases split by a sharp edge and a gentle ramp: no noise of their own.
  Volume clean = Volume::Create({4, 96, 96, 1}, DType::kFloat32).value();
  for (int64_t z = 0; z < 4; ++z)
    for (int64_t y = 0; y < 96; ++y)
      for (int64_t x = 0; x < 96; ++x) clean.data<float>()[(z * 96 + y) * 96 + x] = (x < 48 ? 40.0f : 200.0f) + 0.3f * y;
  const DataFingerprint none = ComputeFingerprint(clean, nullptr, {}).value();
  CHECK(none.noise_sigma < 0.5);
  std::mt19937 rng(3);
  for (double sigma : {5.0, 25.0}) {
    Volume noisy = clean;
    std::normal_distribution<float> gauss(0.0f, static_cast<float>(sigma));
    for (int64_t i = 0; i < noisy.shape().elements(); ++i) noisy.data<float>()[i] += gauss(rng);
    const DataFingerprint fp = ComputeFingerprint(noisy, nullptr, {}).value();
    INFO("sigma " << sigma << " estimated " << fp.noise_sigma);
    CHECK(fp.noise_sigma == Approx(sigma).epsilon(0.1));
    CHECK(fp.NoiseLevel() == Approx(fp.noise_sigma / (fp.p995 - fp.p005)));
  }
  CHECK_FALSE(SuggestDenoiseFirst(none));
}

TEST_CASE("at least four valid candidates that differ in kind, 3D once labels lie on two slices", "[strategy]") {
  const MaterialsSample& s = SmallSample();
  DataFingerprint fp = ComputeFingerprint(s.image, &s.scribbles, {}).value();
  std::vector<ModelConfig> c = PlanCandidates(fp);
  REQUIRE(c.size() >= 4);
  std::set<std::string> archs, names;
  for (const ModelConfig& m : c) {
    INFO(m.name);
    CHECK(m.Validate().ok());
    CHECK(m.patch_y <= 64);
    CHECK(m.patch_z <= 12);
    CHECK(m.class_weights.size() == 3);
    archs.insert(m.architecture);
    names.insert(m.name);
    // The JSON form round-trips exactly.
    CHECK(ConfigToJson(ConfigFromJson(ConfigToJson(m)).value()) == ConfigToJson(m));
  }
  // All labels lie on one slice: no 3D candidate, a 2D U-Net of another scale instead.
  CHECK(archs == std::set<std::string>{"unet2d", "unet25d", "dilated2d"});
  CHECK(names.size() == c.size());

  // A dab on a second slice: the 3D U-Net joins.
  Volume two = s.scribbles;
  two.data<uint8_t>()[two.Index(s.label_slice == 2 ? 3 : 2, 5, 5)] = 1;
  DataFingerprint fp2slices = ComputeFingerprint(s.image, &two, {}).value();
  CHECK(fp2slices.labelled_slices == 2);
  std::set<std::string> archs2;
  for (const ModelConfig& m : PlanCandidates(fp2slices)) archs2.insert(m.architecture);
  CHECK(archs2 == std::set<std::string>{"unet2d", "unet25d", "unet3d", "dilated2d"});

  // A single 2D image: substitutes keep four candidates, all 2D.
  Volume slice = ExtractSlab(s.image, SlabRange{6, 7, 0, 0}).value();
  Volume labels = ExtractSlab(s.scribbles, SlabRange{6, 7, 0, 0}).value();
  DataFingerprint fp2 = ComputeFingerprint(slice, &labels, {}).value();
  std::vector<ModelConfig> c2 = PlanCandidates(fp2);
  CHECK(c2.size() >= 4);
  for (const ModelConfig& m : c2) CHECK_FALSE(IsThreeD(m.architecture));
}

TEST_CASE("more labels buy more training, and a GPU buys bigger patches", "[strategy]") {
  const MaterialsSample& s = SmallSample();
  DataFingerprint fp = ComputeFingerprint(s.image, &s.scribbles, {}).value();
  fp.labelled_total = 50000;
  ModelConfig few = PlanCandidates(fp)[0];
  fp.labelled_total = 1000000;
  ModelConfig many = PlanCandidates(fp)[0];
  CHECK(many.epochs > few.epochs);
  fp.shape.y = fp.shape.x = 1024;
  ModelConfig cpu = PlanCandidates(fp)[0];
  fp.resources.gpu = true;
  ModelConfig gpu = PlanCandidates(fp)[0];
  CHECK(cpu.patch_y == 64);
  CHECK(gpu.patch_y == 256);
  ModelConfig denoise = PlanDenoiser(fp);
  CHECK(denoise.task == Task::kDenoise);
  CHECK(denoise.Validate().ok());
  CHECK(denoise.validation_fraction == 0);
  CHECK(denoise.refit_fraction == 0);  // it carried the segmentation base's 0.5
}

TEST_CASE("scribble rules: cross-entropy alone, rotations only while labels are few", "[strategy]") {
  const MaterialsSample& s = SmallSample();
  DataFingerprint fp = ComputeFingerprint(s.image, &s.scribbles, {}).value();
  fp.labelled_total = 5000;
  for (const ModelConfig& c : PlanCandidates(fp)) {
    CHECK(c.augment == "rot90");
    CHECK(c.dice_weight == 0);
    CHECK(c.Validate().ok());
  }
  const ModelConfig few = PlanCandidates(fp)[0];
  fp.labelled_total = 50000;
  for (const ModelConfig& c : PlanCandidates(fp)) CHECK(c.augment == "flips");
  const ModelConfig fifty = PlanCandidates(fp)[0];
  CHECK(few.epochs * few.steps_per_epoch == 600);
  CHECK(fifty.epochs * fifty.steps_per_epoch == 900);
}

TEST_CASE("validation holds out about 1,700 px of the least painted class, 5-20%, and few labels refit", "[strategy]") {
  const MaterialsSample& s = SmallSample();
  DataFingerprint fp = ComputeFingerprint(s.image, &s.scribbles, {}).value();
  auto fraction = [&](std::vector<int64_t> per_class) {
    fp.labelled_per_class = per_class;
    fp.num_classes = static_cast<int64_t>(per_class.size());
    fp.labelled_total = 0;
    for (int64_t n : per_class) fp.labelled_total += n;
    return PlanCandidates(fp)[0].validation_fraction;
  };
  CHECK(fraction({1667, 1667, 1666}) == Approx(0.2));
  CHECK(fraction({17000, 17000, 17000}) == Approx(0.1));
  CHECK(fraction({340000, 340000, 340000}) == Approx(0.05));
  // A rarely painted class keeps its strokes' share of the validation: a fifth for all.
  CHECK(fraction({48000, 2000}) == Approx(0.2));
  // While labels are few, the held-out strokes train the second half of every chain.
  for (const ModelConfig& c : PlanCandidates(fp)) CHECK(c.RefitFrom() == (c.epochs + 1) / 2);
  fraction({17000, 17000, 17000});
  for (const ModelConfig& c : PlanCandidates(fp)) CHECK(c.RefitFrom() == c.epochs);
}

TEST_CASE("denoiser rules: rotations without resampling, gamma 1, steps from the image size", "[strategy]") {
  const MaterialsSample& s = SmallSample();
  DataFingerprint fp = ComputeFingerprint(s.image, nullptr, {}).value();
  ModelConfig small = PlanDenoiser(fp);
  CHECK(small.augment == "rot90");  // affine resampling would correlate neighbouring noise
  CHECK(small.n2n_gamma == 1.0);
  CHECK(small.base_filters == 16);
  CHECK(small.norm_layer == "none");
  CHECK(small.Validate().ok());
  CHECK(small.epochs * small.steps_per_epoch == 3000);
  fp.shape = {100, 512, 512, 1};
  ModelConfig stack = PlanDenoiser(fp);
  CHECK(stack.epochs * stack.steps_per_epoch == 8000);
  fp.shape = {1, 512, 512, 1};
  ModelConfig slice = PlanDenoiser(fp);
  CHECK(slice.epochs * slice.steps_per_epoch == 5225);
  fp.shape = {100, 512, 512, 1};
  fp.resources.gpu = true;
  ModelConfig gpu = PlanDenoiser(fp);
  CHECK(gpu.epochs * gpu.steps_per_epoch == 16000);
  CHECK(gpu.base_filters == 48);
}

TEST_CASE("augmentation levels, Dice weight and gamma travel in JSON, and older configurations still read", "[strategy]") {
  ModelConfig c = testing::TinyConfig("unet2d");
  c.augment = "rot90";
  c.dice_weight = 0.25;
  c.n2n_gamma = 0.5;
  c.refit_fraction = 0.25;
  ModelConfig back = ConfigFromJson(ConfigToJson(c)).value();
  CHECK(back.refit_fraction == 0.25);
  CHECK(back.augment == "rot90");
  CHECK(back.dice_weight == 0.25);
  CHECK(back.n2n_gamma == 0.5);
  Json j = ConfigToJson(c);
  j["augment"] = true;  // a configuration from before the levels
  j.erase("dice_weight");
  j.erase("n2n_gamma");
  j.erase("refit_fraction");
  back = ConfigFromJson(j).value();
  CHECK(back.refit_fraction == 0);  // older chains hold their strokes out to the end
  CHECK(back.augment == "full");
  CHECK(back.dice_weight == 1.0);
  CHECK(back.n2n_gamma == 2.0);  // what older denoising chains trained with
  j["augment"] = false;
  CHECK(ConfigFromJson(j).value().augment == "none");
  j["augment"] = "sideways";
  CHECK(ConfigFromJson(j).status().message().find("augment") != std::string::npos);
  j["augment"] = "flips";
  j["dice_weight"] = -1;
  CHECK(ConfigFromJson(j).status().message().find("dice_weight") != std::string::npos);
  j["dice_weight"] = 0;
  j["n2n_gamma"] = -0.5;
  CHECK(ConfigFromJson(j).status().message().find("n2n_gamma") != std::string::npos);
  c.n2n_gamma = 1000;
  CHECK(c.Validate().message().find("n2n_gamma") != std::string::npos);
  c.n2n_gamma = 2;
  c.refit_fraction = 1;  // nothing would be validated
  CHECK(c.Validate().message().find("refit_fraction") != std::string::npos);
}

TEST_CASE("unusable data is refused with a reason", "[strategy]") {
  const MaterialsSample& s = SmallSample();
  Volume none = Volume::Create({12, 64, 64, 1}, DType::kUInt8).value();
  CHECK(ComputeFingerprint(s.image, &none, {}).status().message().find("no labelled pixels") != std::string::npos);

  Volume gap = s.scribbles;  // relabel class 2 as 3 wherever class 3 is absent: class 2 missing
  for (int64_t i = 0; i < gap.shape().elements(); ++i) {
    if (gap.data<uint8_t>()[i] == 2) gap.data<uint8_t>()[i] = 3;
  }
  CHECK(ComputeFingerprint(s.image, &gap, {}).status().message().find("class 2 has no labelled pixels") !=
        std::string::npos);

  Volume small = Volume::Create({12, 32, 32, 1}, DType::kUInt8).value();
  CHECK(ComputeFingerprint(s.image, &small, {}).status().message().find("do not match") != std::string::npos);

  Volume nan = Volume::Create({2, 20, 20, 1}, DType::kFloat32).value();
  nan.data<float>()[123] = std::nanf("");
  CHECK(ComputeFingerprint(nan, nullptr, {}).status().message().find("NaN") != std::string::npos);

  Volume tiny = Volume::Create({1, 8, 8, 1}, DType::kUInt8).value();
  CHECK(ComputeFingerprint(tiny, nullptr, {}).status().message().find("smaller than the smallest patch") !=
        std::string::npos);
}

TEST_CASE("invalid model configurations are refused", "[strategy]") {
  ModelConfig c = testing::TinyConfig("unet2d");
  Json j = ConfigToJson(c);
  j["architecture"] = "transformer9000";
  CHECK(ConfigFromJson(j).status().message().find("unknown architecture") != std::string::npos);
  j = ConfigToJson(c);
  j["patch"] = {1, 30, 32};  // not a multiple of 2^depth
  CHECK(ConfigFromJson(j).status().message().find("patch_y") != std::string::npos);
  j = ConfigToJson(c);
  j["code"] = "import os";
  CHECK(ConfigFromJson(j).status().message().find("unknown field") != std::string::npos);
}

}  // namespace
}  // namespace idlegrid::models
