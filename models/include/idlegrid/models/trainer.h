// Training of one model configuration from sparse labels (segmentation) or from the noisy
// image itself (self-supervised denoising), resumable bit for bit.
//
// Determinism: on CPU with a fixed thread count, training is a pure function of (image,
// labels, config, seed, threads). A checkpoint holds the weights, the optimiser state, both
// random generators, the position (epoch, step) and the metric history, so training resumed
// from it, any number of times, ends with exactly the weights of an uninterrupted run.
//
// Not thread-safe; one Trainer per process is the norm (LibTorch threads are global).
// No LibTorch in this header.
#ifndef IDLEGRID_MODELS_TRAINER_H_
#define IDLEGRID_MODELS_TRAINER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "idlegrid/models/model_config.h"
#include "idlegrid/shared/status.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid::models {

struct TrainerOptions {
  uint64_t seed = 0;
  std::string device = "cpu";  // "cpu" or "cuda" / "cuda:N"
  // Which slices of the volume `image` and `labels` hold (a crop: the labelled slices with
  // the context the network reads, SliceRegion::Around(labelled, InferenceHalo())). No runs:
  // the whole volume. Training on a crop gives bit for bit the weights of training on the
  // whole volume, since patches are placed and validated in whole-volume slices.
  SliceRegion region;
};

// Metrics of one finished epoch.
struct EpochMetrics {
  int64_t epoch = 0;              // 1-based count of finished epochs
  double train_loss = 0;          // mean over the epoch's steps
  std::vector<double> dice;       // per class on the held-out strokes (segmentation)
  std::vector<double> iou;
  double mean_dice = -1;          // -1 when there is no validation (none held out, or a
                                  // refit epoch: ModelConfig::refit_fraction)
};

struct StepInfo {
  int64_t epoch = 0;          // epochs finished before this step
  int64_t step_in_epoch = 0;  // steps done in the current epoch, this one included
  int64_t global_step = 0;
  double loss = 0;
};

class Trainer {
 public:
  // image: Z x Y x X x C (any sample type); labels: uint8 Z x Y x X (0 = unlabelled,
  // 1..K classes) for segmentation, null for denoising. Errors: INVALID_ARGUMENT for bad
  // config or data (shape mismatch, no labels, an unlabelled class, NaN, image smaller than
  // the patch).
  static StatusOr<std::unique_ptr<Trainer>> Create(const ModelConfig& config, const Volume& image,
                                                   const Volume* labels,
                                                   const TrainerOptions& options = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // One optimisation step of the current epoch. FAILED_PRECONDITION when the epoch's steps
  // are done (call FinishEpoch) or all epochs are.
  StatusOr<StepInfo> Step();
  bool EpochStepsDone() const;
  // Validates (segmentation), records the epoch in the history and moves to the next.
  // `should_stop` is asked between the tiles of validation: if it says yes, CANCELLED and
  // nothing changed (the epoch's steps stay done, ready to checkpoint; validation reruns
  // after a resume and gives what it would have).
  StatusOr<EpochMetrics> FinishEpoch(const std::function<bool()>& should_stop = {});

  // Runs steps and epoch ends until `end_epoch` epochs are finished. Before each step and
  // between the tiles of validation `should_stop` is asked (a SIGTERM, a user coming back):
  // if it says yes the run stops with CANCELLED, ready to checkpoint. Callbacks may be empty.
  struct Hooks {
    std::function<bool()> should_stop;
    std::function<void(const StepInfo&)> on_step;
    std::function<void(const EpochMetrics&)> on_epoch;
  };
  Status RunUntilEpoch(int64_t end_epoch, const Hooks& hooks);

  // Writes atomically (temporary file + rename).
  Status SaveCheckpoint(const std::string& path) const;
  // Restores a checkpoint of the same configuration; DATA_LOSS for a corrupt file,
  // FAILED_PRECONDITION for a checkpoint of another configuration.
  Status LoadCheckpoint(const std::string& path);

  // Starts from the weights of a model package (fine-tuning: the wizard retrains the chosen
  // candidate with the corrected labels). Only before the first step; the package's network
  // must have this configuration's shape (architecture, channels, classes, filters, depth,
  // context, normalisation layer), else FAILED_PRECONDITION; DATA_LOSS for a corrupt file.
  Status InitializeFrom(const std::string& model_package);

  // Writes the model package inference needs: weights, the configuration, the metric
  // history, and `metadata_json` (a JSON object with anything else worth keeping).
  Status ExportModel(const std::string& path, const std::string& metadata_json = "{}") const;

  int64_t epoch() const;          // finished epochs
  int64_t step_in_epoch() const;
  int64_t global_step() const;
  const std::vector<EpochMetrics>& history() const;
  // Mean Dice of the last validated epoch: the model's score on strokes it had not trained
  // on when measured (refit epochs validate nothing). -1 when there is none.
  double validation_dice() const;
  const ModelConfig& config() const;
  // A 64-bit checksum (FNV-1a) over every parameter: equal for bit-identical weights.
  std::string WeightsDigest() const;
  // Labelled voxels used for training / held out for validation.
  int64_t train_voxels() const;
  int64_t validation_voxels() const;

  struct Impl;

 private:
  explicit Trainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_TRAINER_H_
