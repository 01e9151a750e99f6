#include "splitter.h"

#include <algorithm>
#include <cmath>

#include "idlegrid/models/config_json.h"

namespace idlegrid::server {

double EstimateEpochSeconds(const models::ModelConfig& c, int64_t threads) {
  const double voxels = static_cast<double>(c.batch_size) * c.patch_z * c.patch_y * c.patch_x;
  const double per_voxel = 1.4e-6 * std::pow(static_cast<double>(c.base_filters) / 8.0, 0.75) *
                           (models::IsThreeD(c.architecture) ? 2.2 : 1.0) *
                           (c.architecture == "dilated2d" ? 1.65 : 1.0);
  const double speedup = 1.0 + 0.7 * static_cast<double>(std::max<int64_t>(threads, 1) - 1);
  return 1.2 * static_cast<double>(c.steps_per_epoch) * voxels * per_voxel / speedup;
}

int64_t EpochsPerUnit(const models::ModelConfig& config, const QueueOptions& options) {
  const double epoch_s = std::max(1e-3, EstimateEpochSeconds(config, options.unit_threads));
  const auto k = static_cast<int64_t>(std::llround(options.unit_target_seconds / epoch_s));
  return std::clamp<int64_t>(k, 1, std::max<int64_t>(config.epochs, 1));
}

int64_t UnitMemoryBytes(const models::ModelConfig& c, const VolumeShape& v) {
  const int64_t volume = v.z * v.y * v.x * std::max<int64_t>(v.c, 1) * 4 * 2 * 2;
  // Activations: ~2x base_filters channels per voxel across levels, float32, kept for the
  // backward pass (x3 for gradients and workspace).
  const int64_t batch_voxels = c.batch_size * c.patch_z * c.patch_y * c.patch_x;
  const int64_t activations = batch_voxels * c.base_filters * 2 * 4 * 3 * (c.depth + 1);
  return (int64_t{512} << 20) + volume + activations;
}

std::vector<WorkUnit> SplitTrainChain(const std::string& job_id, const std::string& chain,
                                      const models::ModelConfig& config, const NamedBlobs& inputs,
                                      const VolumeShape& volume, int64_t seed,
                                      const QueueOptions& options, int64_t epochs_per_unit) {
  const int64_t k = epochs_per_unit > 0 ? epochs_per_unit : EpochsPerUnit(config, options);
  std::vector<WorkUnit> units;
  for (int64_t begin = 0; begin < config.epochs; begin += k) {
    WorkUnit u;
    u.unit_id = job_id + "-" + chain + "-e" + std::to_string(begin);
    u.job_id = job_id;
    u.kind = UnitKind::kTrainEpochs;
    u.config = Json{{"model", models::ConfigToJson(config)}};
    u.inputs = inputs;
    u.threads = options.unit_threads;
    u.checkpoint_every_s = options.checkpoint_every_s;
    u.min_memory_bytes = UnitMemoryBytes(config, volume);
    u.needs_gpu = false;
    u.seed = seed;
    u.epochs = EpochRange{begin, std::min(config.epochs, begin + k)};
    units.push_back(std::move(u));
  }
  return units;
}

int64_t SlabDepth(const VolumeShape& v, int64_t halo, const QueueOptions& options) {
  const int64_t plane = std::max<int64_t>(1, v.y * v.x * std::max<int64_t>(v.c, 1));
  // Memory: core + halos within the target.
  const int64_t by_memory = std::max<int64_t>(1, options.slab_target_voxels / plane - 2 * halo);
  // Sharing: even a small volume becomes min_slabs slabs, so that several nodes work on it,
  // unless that would make the halos outweigh the cores (core >= 2 x halo).
  const int64_t by_sharing = std::max<int64_t>((v.z + options.min_slabs - 1) / std::max<int64_t>(options.min_slabs, 1),
                                               2 * halo);
  return std::clamp<int64_t>(std::min(by_memory, by_sharing), 1, std::max<int64_t>(v.z, 1));
}

StatusOr<std::vector<WorkUnit>> SplitInfer(const std::string& job_id, const std::string& prefix,
                                           const models::ModelConfig& config, const BlobRef& model,
                                           const BlobRef& volume_blob, const VolumeShape& volume,
                                           const std::string& output, const QueueOptions& options,
                                           int64_t z_begin, int64_t z_end, int64_t frames) {
  if (z_end < 0) z_end = volume.z;
  const int64_t halo = config.InferenceHalo();
  VolumeShape part = volume;  // slab depth: as for one time point's share of the range
  part.z = std::max<int64_t>(1, std::min(z_end - z_begin, volume.z / std::max<int64_t>(frames, 1)));
  // The time points of the range already share the work out: fewer slabs each.
  const int64_t f = volume.z / std::max<int64_t>(frames, 1);
  const int64_t spanned = f > 0 && z_end > z_begin ? (z_end - 1) / f - z_begin / f + 1 : 1;
  QueueOptions per_frame = options;
  per_frame.min_slabs = std::max<int64_t>(1, (options.min_slabs + spanned - 1) / spanned);
  IDLEGRID_ASSIGN_OR_RETURN(std::vector<SlabRange> slabs,
                            PlanSeriesSlabs(volume.z, frames, z_begin, z_end, SlabDepth(part, halo, per_frame), halo));
  std::vector<WorkUnit> units;
  for (const SlabRange& s : slabs) {
    WorkUnit u;
    u.unit_id = job_id + "-" + prefix + "-z" + std::to_string(s.z_begin);
    u.job_id = job_id;
    u.kind = UnitKind::kInferSlab;
    u.config = Json{{"output", output}};
    u.inputs["model"] = model;
    u.inputs["volume"] = volume_blob;
    u.threads = options.unit_threads;
    u.checkpoint_every_s = options.checkpoint_every_s;
    const VolumeShape slab_shape{s.read_end() - s.read_begin(), volume.y, volume.x, volume.c};
    u.min_memory_bytes = UnitMemoryBytes(config, slab_shape);
    u.slab = s;
    u.region = SliceRegion::Range(volume.z, s.read_begin(), s.read_end());  // cut on preparation
    u.region->frames = frames;
    units.push_back(std::move(u));
  }
  return units;
}

std::vector<int64_t> ReviewSample(int64_t depth, int64_t frames, int64_t max_slices) {
  frames = std::max<int64_t>(frames, 1);
  const int64_t per_frame_depth = std::max<int64_t>(depth / frames, 1);
  const int64_t per_frame = std::clamp<int64_t>(max_slices / frames, 1, per_frame_depth);
  std::vector<int64_t> out;
  for (int64_t t = 0; t < frames; ++t) {
    for (int64_t i = 0; i < per_frame; ++i) {
      // Centres of per_frame equal parts of the time point.
      const int64_t z = (2 * i + 1) * per_frame_depth / (2 * per_frame);
      if (out.empty() || out.back() < t * per_frame_depth + z) out.push_back(t * per_frame_depth + z);
    }
  }
  return out;
}

std::vector<WorkUnit> SplitReview(const std::string& job_id, const std::string& prefix,
                                  const std::vector<ReviewModel>& models, const BlobRef& volume_blob,
                                  const VolumeShape& volume, int64_t frames, const QueueOptions& options) {
  const int64_t plane = std::max<int64_t>(1, volume.y * volume.x);
  const auto m = static_cast<int64_t>(std::max<size_t>(models.size(), 1));
  const int64_t budget = kReviewVoxels / (plane * m);
  const std::vector<int64_t> sample = ReviewSample(volume.z, frames, std::clamp<int64_t>(budget, 8, 64));
  // Units of about a sixteenth of the budget, and at least min_slabs of them when the
  // sample allows, so that several nodes share a review.
  const auto shared = static_cast<int64_t>((sample.size() + static_cast<size_t>(std::max<int64_t>(options.min_slabs, 1)) - 1) /
                                           static_cast<size_t>(std::max<int64_t>(options.min_slabs, 1)));
  const int64_t per_unit = std::clamp<int64_t>(budget / 16, 1, std::max<int64_t>(shared, 1));
  int64_t halo = 0;
  for (const ReviewModel& r : models) halo = std::max(halo, r.config.InferenceHalo());
  std::vector<WorkUnit> units;
  for (size_t i = 0; i < sample.size(); i += static_cast<size_t>(per_unit)) {
    WorkUnit u;
    u.review_slices.assign(sample.begin() + static_cast<std::ptrdiff_t>(i),
                           sample.begin() + static_cast<std::ptrdiff_t>(std::min(sample.size(), i + static_cast<size_t>(per_unit))));
    u.unit_id = job_id + "-" + prefix + "-r" + std::to_string(u.review_slices.front());
    u.job_id = job_id;
    u.kind = UnitKind::kReviewSlices;
    Json names = Json::array();
    for (const ReviewModel& r : models) {
      u.inputs[r.input] = r.model;
      names.push_back(r.input);
    }
    u.config = Json{{"models", names}};
    u.inputs["volume"] = volume_blob;
    u.threads = options.unit_threads;
    u.checkpoint_every_s = options.checkpoint_every_s;
    u.region = SliceRegion::Around(u.review_slices, halo, volume.z, frames);
    VolumeShape held = volume;
    held.z = u.region->slices();
    u.min_memory_bytes = models.empty() ? 0 : UnitMemoryBytes(models[0].config, VolumeShape{std::min<int64_t>(held.z, 2 * halo + 1), volume.y, volume.x, volume.c});
    units.push_back(std::move(u));
  }
  return units;
}

}  // namespace idlegrid::server
