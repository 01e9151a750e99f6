// A model configuration: everything that defines a training run as data (units carry these,
// never code). Produced by the no-parameter strategy (strategy.h); JSON in config_json.h.
// No LibTorch in this header.
#ifndef IDLEGRID_MODELS_MODEL_CONFIG_H_
#define IDLEGRID_MODELS_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "idlegrid/shared/status.h"

namespace idlegrid::models {

enum class Task { kSegment, kDenoise };

// Built-in architectures, chosen by name:
//   "unet2d"    2D U-Net on single slices
//   "unet25d"   2D U-Net seeing 2k+1 adjacent slices as channels (context_slices = k)
//   "unet3d"    3D U-Net on Z x Y x X patches
//   "dilated2d" full-resolution residual network with growing dilations (no pooling)
bool IsKnownArchitecture(const std::string& name);
bool IsThreeD(const std::string& architecture);

// Intensity normalisation: clip to [clip_low, clip_high], then (v - mean) / std.
struct Normalization {
  double clip_low = 0, clip_high = 1;
  double mean = 0, std = 1;
};

struct ModelConfig {
  std::string name;                 // e.g. "unet2d-f16-d3", unique within a sweep
  Task task = Task::kSegment;
  std::string architecture = "unet2d";
  int64_t in_channels = 1;          // channels of the image (before 2.5D stacking)
  int64_t num_classes = 2;          // segmentation: classes 1..K (labels 0 = unlabelled)
  int64_t base_filters = 16;
  int64_t depth = 3;                // U-Net levels below the top; dilated: residual blocks
  int64_t context_slices = 0;       // unet25d: k slices on each side
  std::string norm_layer = "batch"; // "batch" or "none" (denoising: none measured 0.9 dB better)
  Normalization norm;
  int64_t patch_z = 1, patch_y = 64, patch_x = 64;
  int64_t batch_size = 4;
  double learning_rate = 1e-3;
  double weight_decay = 1e-5;
  int64_t epochs = 10;              // total epochs of the chain
  int64_t steps_per_epoch = 25;
  std::vector<double> class_weights;  // size num_classes; empty = equal
  // On-the-fly augmentation (training_ops.h): "none", "flips", "rot90" (flips and 90-degree
  // rotations) or "full" (also a small rotation/scaling and, for segmentation, intensity
  // changes). Older configurations' `true`/`false` read as "full"/"none".
  std::string augment = "full";
  // Weight of the soft Dice term next to cross-entropy (0 = cross-entropy alone).
  double dice_weight = 1.0;
  // Denoising: weight of Neighbor2Neighbor's consistency term (gamma in Huang et al. 2021),
  // which pulls the sub-image prediction towards the full-image one (training_ops.h).
  double n2n_gamma = 2.0;
  double validation_fraction = 0.2;   // of the labelled strokes, per class
  // Segmentation: the last floor(epochs x refit_fraction) epochs of the chain train on every
  // label, the validation strokes too, and validate nothing (the scores before them stand).
  // 0 = the validation strokes stay out to the end.
  double refit_fraction = 0;
  std::vector<std::string> class_names;

  // The first epoch (0-based) that trains on the validation strokes too; epochs when none.
  int64_t RefitFrom() const;
  // Halo (slices on each side) an inference slab needs so that its stitched result equals
  // whole-volume inference.
  int64_t InferenceHalo() const;
  // Output channels of the network.
  int64_t OutChannels() const { return task == Task::kSegment ? num_classes : in_channels; }
  // INVALID_ARGUMENT naming the field when something is out of range or inconsistent.
  Status Validate() const;
};

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_MODEL_CONFIG_H_
