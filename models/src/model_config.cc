#include "idlegrid/models/model_config.h"

#include <cmath>

namespace idlegrid::models {

bool IsKnownArchitecture(const std::string& name) {
  return name == "unet2d" || name == "unet25d" || name == "unet3d" || name == "dilated2d";
}

bool IsThreeD(const std::string& architecture) { return architecture == "unet3d"; }

int64_t ModelConfig::InferenceHalo() const {
  if (IsThreeD(architecture)) return patch_z;  // every tile touching the core
  if (architecture == "unet25d") return context_slices;
  return 0;
}

int64_t ModelConfig::RefitFrom() const {
  return epochs - static_cast<int64_t>(std::floor(static_cast<double>(epochs) * refit_fraction));
}

Status ModelConfig::Validate() const {
  auto bad = [](const std::string& field, const std::string& why) {
    return InvalidArgumentError("model config " + field + ": " + why);
  };
  if (!IsKnownArchitecture(architecture)) {
    return bad("architecture", "unknown architecture \"" + architecture +
                                   "\" (built in: unet2d, unet25d, unet3d, dilated2d)");
  }
  if (task == Task::kDenoise && architecture != "unet2d" && architecture != "dilated2d") {
    return bad("architecture", "denoising uses unet2d or dilated2d");
  }
  if (in_channels < 1 || in_channels > 16) return bad("in_channels", "must be 1..16");
  if (norm_layer != "batch" && norm_layer != "none") return bad("norm_layer", "must be batch or none");
  if (augment != "none" && augment != "flips" && augment != "rot90" && augment != "full") {
    return bad("augment", "must be none, flips, rot90 or full");
  }
  if (!(dice_weight >= 0 && dice_weight <= 100)) return bad("dice_weight", "must be in [0, 100]");
  if (!(n2n_gamma >= 0 && n2n_gamma <= 100)) return bad("n2n_gamma", "must be in [0, 100]");
  if (task == Task::kSegment && (num_classes < 2 || num_classes > 255)) {
    return bad("num_classes", "must be 2..255");
  }
  if (base_filters < 4 || base_filters > 256) return bad("base_filters", "must be 4..256");
  if (depth < 1 || depth > 6) return bad("depth", "must be 1..6");
  if (context_slices < 0 || context_slices > 8) return bad("context_slices", "must be 0..8");
  if (architecture == "unet25d" && context_slices < 1) {
    return bad("context_slices", "unet25d needs at least 1");
  }
  const int64_t multiple = architecture == "dilated2d" ? 1 : int64_t{1} << depth;
  for (auto [field, v] : {std::pair<const char*, int64_t>{"patch_y", patch_y}, {"patch_x", patch_x}}) {
    if (v < 8 || v > 1024 || v % multiple != 0) {
      return bad(field, "must be 8..1024 and a multiple of " + std::to_string(multiple));
    }
  }
  if (IsThreeD(architecture)) {
    if (patch_z < 4 || patch_z > 256 || patch_z % multiple != 0) {
      return bad("patch_z", "must be 4..256 and a multiple of " + std::to_string(multiple));
    }
  } else if (patch_z != 1) {
    return bad("patch_z", "must be 1 for 2D architectures");
  }
  if (batch_size < 1 || batch_size > 256) return bad("batch_size", "must be 1..256");
  if (!(learning_rate > 0 && learning_rate < 1)) return bad("learning_rate", "must be in (0, 1)");
  if (!(weight_decay >= 0 && weight_decay < 1)) return bad("weight_decay", "must be in [0, 1)");
  if (epochs < 1 || epochs > 100000) return bad("epochs", "must be 1..100000");
  if (steps_per_epoch < 1 || steps_per_epoch > 100000) return bad("steps_per_epoch", "must be 1..100000");
  if (!class_weights.empty() && static_cast<int64_t>(class_weights.size()) != num_classes) {
    return bad("class_weights", "needs one weight per class");
  }
  for (double w : class_weights) {
    if (!(w > 0 && w < 1e6)) return bad("class_weights", "must be positive");
  }
  if (!(validation_fraction >= 0 && validation_fraction < 0.9)) {
    return bad("validation_fraction", "must be in [0, 0.9)");
  }
  if (!(refit_fraction >= 0 && refit_fraction < 1)) return bad("refit_fraction", "must be in [0, 1)");
  if (!(norm.std > 0) || !(norm.clip_high >= norm.clip_low)) return bad("norm", "invalid");
  return Status::Ok();
}

}  // namespace idlegrid::models
