// Small data and configurations that train in seconds on one CPU thread.
#ifndef IDLEGRID_TESTS_MODELS_MODEL_FIXTURES_H_
#define IDLEGRID_TESTS_MODELS_MODEL_FIXTURES_H_

#include <algorithm>
#include <random>

#include "idlegrid/models/runtime.h"
#include "idlegrid/models/strategy.h"
#include "idlegrid/shared/sample_volume.h"

namespace idlegrid::testing {

inline const MaterialsSample& SmallSample() {
  static const MaterialsSample sample = [] {
    SampleOptions o;
    o.shape = {12, 64, 64, 1};
    o.grains = 10;
    o.pores = 6;
    o.inclusions = 12;
    o.labelled_pixels = 3000;
    o.brush_radius = 2;
    return GenerateMaterialsSample(o).value();
  }();
  return sample;
}

// The small sample's image with Gaussian noise of `fraction` of its intensity range added.
inline Volume NoisySmallSample(double fraction, uint32_t seed) {
  Volume noisy = SmallSample().image;
  uint16_t* p = noisy.data<uint16_t>();
  const int64_t n = noisy.shape().elements();
  const auto [lo, hi] = std::minmax_element(p, p + n);
  std::mt19937 rng(seed);
  std::normal_distribution<double> gauss(0.0, fraction * (*hi - *lo));
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<uint16_t>(std::clamp(p[i] + gauss(rng), 0.0, 65535.0));
  return noisy;
}

// The strategy's candidate for `architecture`, shrunk to test size.
inline models::ModelConfig TinyConfig(const std::string& architecture, int64_t epochs = 2,
                                      int64_t steps = 3) {
  models::ConfigureCpuRuntime(1);
  const MaterialsSample& s = SmallSample();
  models::DataFingerprint fp = models::ComputeFingerprint(s.image, &s.scribbles, {}).value();
  fp.labelled_slices = 2;  // the scribbles lie on one slice; as if on two, so unet3d is planned too
  for (models::ModelConfig c : models::PlanCandidates(fp)) {
    if (c.architecture != architecture) continue;
    c.base_filters = 8;
    c.depth = 2;
    c.patch_y = c.patch_x = 32;
    if (architecture == "unet3d") c.patch_z = 8;
    c.batch_size = 2;
    c.epochs = epochs;
    c.steps_per_epoch = steps;
    return c;
  }
  std::abort();
}

// The strategy's denoiser for the small sample, shrunk to test size (8 filters, 2 levels,
// 32 px patches, batch 2).
inline models::ModelConfig TinyDenoiserConfig(int64_t epochs = 1, int64_t steps = 2) {
  models::ConfigureCpuRuntime(1);
  models::ModelConfig c =
      models::PlanDenoiser(models::ComputeFingerprint(SmallSample().image, nullptr, {}).value());
  c.base_filters = 8;
  c.depth = 2;
  c.patch_y = c.patch_x = 32;
  c.batch_size = 2;
  c.epochs = epochs;
  c.steps_per_epoch = steps;
  return c;
}

}  // namespace idlegrid::testing

#endif  // IDLEGRID_TESTS_MODELS_MODEL_FIXTURES_H_
