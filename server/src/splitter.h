// Splitting jobs into units (internal to server/). Pure functions of the job and options, so
// each rule is tested on its own.
#ifndef IDLEGRID_SERVER_SRC_SPLITTER_H_
#define IDLEGRID_SERVER_SRC_SPLITTER_H_

#include <string>
#include <vector>

#include "idlegrid/models/model_config.h"
#include "idlegrid/server/queue.h"
#include "idlegrid/shared/protocol.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid::server {

// Estimated seconds of one training epoch on `threads` threads. Calibrated on the 2-core CI
// machine with models/'s own layers: a 2D U-Net of 8 filters costs about 1.4 us per voxel of
// the batch on one thread (54 ms a step for 16 patches of 64 px on 2 threads), width scales as
// filters^0.75 (16 filters: 90 ms), a 3D U-Net costs 2.2x per voxel, and the dilated net
// 1.65x a U-Net of its width (12 filters: about 120 ms); more threads scale at 70%, and the
// epoch's validation pass adds about a fifth.
double EstimateEpochSeconds(const models::ModelConfig& config, int64_t threads);

// Epochs per training unit: enough for a unit to last about options.unit_target_seconds,
// at least one, at most the whole chain.
int64_t EpochsPerUnit(const models::ModelConfig& config, const QueueOptions& options);

// Memory a unit needs on a node: the volume (image + labels as float32 tensors, twice) plus
// the network's activations for one batch, plus LibTorch's own ~0.5 GiB.
int64_t UnitMemoryBytes(const models::ModelConfig& config, const VolumeShape& volume);

// A chain of train_epochs units for one configuration. Unit ids are job_id-chain-e<first
// epoch> (chain: a short id such as "c0"); epochs_per_unit > 0 overrides EpochsPerUnit; every unit but the first needs the previous unit's checkpoint, which the
// queue adds when that unit completes.
std::vector<WorkUnit> SplitTrainChain(const std::string& job_id, const std::string& chain,
                                      const models::ModelConfig& config, const NamedBlobs& inputs,
                                      const VolumeShape& volume, int64_t seed,
                                      const QueueOptions& options, int64_t epochs_per_unit = 0);

// Slab depth for inference: at most about options.slab_target_voxels per slab (core + halo),
// and at least options.min_slabs slabs when the halo allows.
int64_t SlabDepth(const VolumeShape& volume, int64_t halo, const QueueOptions& options);

// infer_slab units covering slices [z_begin, z_end) of the volume (z_end < 0: to the end),
// with halos from the whole volume; `output` is "labels", "probabilities" or "denoised".
// A series of `frames` time points (volume.z = frames x slices) is split per time point:
// no slab spans two, and halos stay in their own (PlanSeriesSlabs).
StatusOr<std::vector<WorkUnit>> SplitInfer(const std::string& job_id, const std::string& prefix,
                                           const models::ModelConfig& config, const BlobRef& model,
                                           const BlobRef& volume_blob, const VolumeShape& volume,
                                           const std::string& output, const QueueOptions& options,
                                           int64_t z_begin = 0, int64_t z_end = -1, int64_t frames = 1);

// The slices a review scores: every slice of a small volume, else up to max_slices spread
// evenly over the time points (the same number in each, at least one each), increasing.
std::vector<int64_t> ReviewSample(int64_t depth, int64_t frames, int64_t max_slices);

// A candidate a review asks: the input name it travels under, its package and configuration.
struct ReviewModel {
  std::string input;  // e.g. "model-c0"
  BlobRef model;
  models::ModelConfig config;
};

// review_slices units over a bounded sample of the volume (about kReviewVoxels voxel
// predictions in all, 8 to 64 slices), in groups of about a sixteenth of that each (and at
// least options.min_slabs groups when there are enough slices); every
// unit's region holds its slices with the largest halo its models need (cut on
// preparation).
inline constexpr int64_t kReviewVoxels = int64_t{64} << 20;
std::vector<WorkUnit> SplitReview(const std::string& job_id, const std::string& prefix,
                                  const std::vector<ReviewModel>& models, const BlobRef& volume_blob,
                                  const VolumeShape& volume, int64_t frames, const QueueOptions& options);

}  // namespace idlegrid::server

#endif  // IDLEGRID_SERVER_SRC_SPLITTER_H_
