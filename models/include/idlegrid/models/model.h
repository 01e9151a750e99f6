// A trained model package loaded for inference, and tiled slab inference.
//
// A package file holds the weights, the ModelConfig (architecture, normalisation, classes)
// and metadata (training history, fingerprint): everything inference needs and nothing
// else. Inference runs on overlapping tiles on a grid anchored to the whole volume, blended
// with Gaussian weights, one tile at a time in a fixed order: a slab (its Z range plus the
// halo config().InferenceHalo() on each side) gives, once stitched, the labels of a
// whole-volume run and probabilities equal to within float rounding. Memory is bounded by
// the tile and a few slices (PredictStreamed), never the slab or the volume. Load() is
// thread-safe; one Model predicts on one thread at a time. No LibTorch in this header.
#ifndef IDLEGRID_MODELS_MODEL_H_
#define IDLEGRID_MODELS_MODEL_H_

#include <functional>
#include <memory>
#include <string>

#include "idlegrid/models/model_config.h"
#include "idlegrid/shared/json.h"
#include "idlegrid/shared/status.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid::models {

struct InferenceOptions {
  std::string device = "cpu";
  bool probabilities = false;  // segmentation: also return per-class probabilities
};

struct InferenceResult {
  Volume labels;         // segmentation: uint8 classes 1..K, Z = slab core depth
  Volume probabilities;  // segmentation, when asked: uint8 p*255, one channel per class
  Volume denoised;       // denoising: float32 in the input's intensity units
};

// A streamed prediction's input: global slice z of the volume, shape [1, Y, X, C], in its
// original intensities. Asked for in a window that moves forward through the slab.
using SliceReader = std::function<StatusOr<Volume>(int64_t z)>;
// A streamed prediction's output: final slices [first, first + n) of the slab's core (the
// volumes of `slices` that the model produces are n deep), handed over in order, each once.
using SliceWriter = std::function<Status(int64_t first, const InferenceResult& slices)>;

// Called after each tile of a prediction.
struct PredictHooks {
  std::function<bool()> should_stop;                 // true: CANCELLED before the next tile
  std::function<void(double fraction)> on_progress;  // after each tile: the share of tiles done
};

class Model {
 public:
  // DATA_LOSS for a corrupt or foreign file, INVALID_ARGUMENT for an unknown architecture.
  static StatusOr<std::unique_ptr<Model>> Load(const std::string& path,
                                               const InferenceOptions& options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const;
  const Json& metadata() const;
  // The same digest as Trainer::WeightsDigest(): equal iff the weights are bit-identical.
  std::string WeightsDigest() const;

  // `input` holds slices [slab.read_begin(), slab.read_end()) of a volume of `total_depth`
  // slices, in its original intensities. The result covers [slab.z_begin, slab.z_end).
  // INVALID_ARGUMENT when the input does not fit the model or the halo is too small;
  // CANCELLED when hooks.should_stop said so (between two tiles).
  StatusOr<InferenceResult> Predict(const Volume& input, const SlabRange& slab,
                                    int64_t total_depth, const PredictHooks& hooks = {}) const;
  // The same without the slab in memory: input slices are read as the tiles reach them and
  // output slices written as they are final, so memory is the network's window (a few
  // slices) whatever the slab's depth. `plane` gives Y, X and C; read/write errors end the
  // prediction with their status.
  Status PredictStreamed(const VolumeShape& plane, const SlabRange& slab, int64_t total_depth,
                         const SliceReader& read, const SliceWriter& write,
                         const PredictHooks& hooks = {}) const;
  // The whole volume in one call.
  StatusOr<InferenceResult> PredictVolume(const Volume& volume, const PredictHooks& hooks = {}) const;

  struct Impl;

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_MODEL_H_
