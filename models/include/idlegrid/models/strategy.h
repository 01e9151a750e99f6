// The no-parameter strategy (in the spirit of nnU-Net): a fingerprint of the data and the
// machine determines every setting of training, and a sweep of differently-shaped candidates
// stands in for the choices a user would otherwise have to make. The rules are spelled out
// next to the code in strategy.cc. No LibTorch in this header.
#ifndef IDLEGRID_MODELS_STRATEGY_H_
#define IDLEGRID_MODELS_STRATEGY_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "idlegrid/models/model_config.h"
#include "idlegrid/shared/status.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid::models {

struct Resources {
  int64_t memory_bytes = int64_t{4} << 30;  // RAM (CPU) or GPU memory available to one unit
  bool gpu = false;
  int64_t threads = 1;
};

struct DataFingerprint {
  VolumeShape shape;
  double p005 = 0, p995 = 1;  // 0.5th / 99.5th intensity percentiles
  double mean = 0, std = 1;   // of the intensities clipped to those percentiles
  int64_t num_classes = 0;    // 0 for denoising
  std::vector<int64_t> labelled_per_class;  // index c-1 for class c
  int64_t labelled_total = 0;
  int64_t labelled_slices = 0;
  std::vector<int64_t> labelled_z;  // the slices holding labels, in order
  // Gaussian noise's sigma, estimated from the sampled slices (the median of Immerkaer's
  // operator: edges and texture count little), in intensity units.
  double noise_sigma = 0;
  // The noise relative to the intensity range (p995 - p005): about 0.1 for sigma 25 on a
  // well-exposed 8-bit image, below 0.02 for clean microscopy.
  double NoiseLevel() const { return p995 > p005 ? noise_sigma / (p995 - p005) : 0; }
  Resources resources;
  // A time series: shape.z is `frames` time points of FrameDepth() slices (time slowest,
  // SliceRegion's convention). Architectures are chosen for one time point's depth.
  int64_t frames = 1;
  int64_t FrameDepth() const { return frames > 0 ? shape.z / frames : shape.z; }
};

// Measures image and labels. `labels` (uint8, same Z/Y/X, 0 = unlabelled) is null for
// denoising. INVALID_ARGUMENT for: shape mismatch, labels that are not uint8, no labelled
// voxel, a class in 1..K without any labelled voxel, NaN or infinite intensities, an image
// smaller than the smallest patch (16 x 16).
StatusOr<DataFingerprint> ComputeFingerprint(const Volume& image, const Volume* labels,
                                             const Resources& resources);

// The fingerprint of a volume read a range of slices at a time, so that planning never holds
// a volume: intensities from `sampled` slices (SampleSlices), labels from every slice in
// order. Sampling every slice gives exactly ComputeFingerprint's result. Not thread-safe.
class FingerprintBuilder {
 public:
  FingerprintBuilder(VolumeShape shape, DType dtype, std::vector<int64_t> sampled);
  // Slices [z_begin, z_begin + slices.z) of the image; those not sampled are skipped.
  Status AddImage(const Volume& slices, int64_t z_begin);
  // Reads every sampled slice through `read(z_begin, z_end)`, consecutive ones together (at
  // most `max_slices` a call), and adds them: a volume on disk, never whole in memory.
  Status AddSampledImage(const std::function<StatusOr<Volume>(int64_t, int64_t)>& read, int64_t max_slices);
  // The next slices of the labels (z_begin continues where the last call ended).
  Status AddLabels(const Volume& slices, int64_t z_begin);
  // The same errors as ComputeFingerprint.
  StatusOr<DataFingerprint> Finish(const Resources& resources, bool with_labels);

 private:
  static Status NotFinite(int64_t element);
  void AddNoiseSample(const Volume& slices, int64_t z, int64_t first);
  VolumeShape shape_;
  DType dtype_;
  std::vector<int64_t> sampled_;  // sorted
  int64_t stride_ = 1;
  std::vector<float> sample_;
  std::vector<float> noise_;  // |Immerkaer's operator| at the sampled interior pixels
  std::vector<int64_t> counts_;
  std::vector<int64_t> labelled_z_;
  int64_t label_slices_ = 0;
};

// From this noise level (DataFingerprint::NoiseLevel) the wizard offers "denoise first"
// (config.denoise; unticked: whether it pays depends on how far apart the phases are, which
// noise alone does not say). Sigma 25 on an 8-bit photograph is about 0.1, the bundled
// sample 0.12, a quiet microscope image below 0.03.
inline constexpr double kDenoiseFirstNoiseLevel = 0.08;
inline bool SuggestDenoiseFirst(const DataFingerprint& fp) { return fp.NoiseLevel() >= kDenoiseFirstNoiseLevel; }

// Bytes of image slices a fingerprint reads: all of a volume up to this size, else an even
// spread of slices of this many bytes (SampleSlices).
inline constexpr int64_t kFingerprintSampleBytes = int64_t{256} << 20;

// The slices a fingerprint samples: every slice while they hold at most max_bytes, else an
// even spread of as many as fit (the first and last included).
std::vector<int64_t> SampleSlices(const VolumeShape& shape, DType dtype, int64_t max_bytes);

// The slices a training unit of `config` needs: for segmentation the labelled slices with
// the context the network reads (ModelConfig::InferenceHalo); for denoising an evenly
// spread sample of whole slices of at most 32 Mi voxels (consecutive ones for a 3D net).
SliceRegion TrainingRegion(const ModelConfig& config, const DataFingerprint& fp);

// At least four segmentation candidates that differ in kind (2D, 2.5D, 3D U-Nets and a
// dilated network, with substitutes when the data is too thin for 2.5D/3D).
std::vector<ModelConfig> PlanCandidates(const DataFingerprint& fp);

// The self-supervised denoiser for this data.
ModelConfig PlanDenoiser(const DataFingerprint& fp);

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_STRATEGY_H_
