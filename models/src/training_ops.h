// Losses and augmentation used by the trainer (internal to models/).
#ifndef IDLEGRID_MODELS_SRC_TRAINING_OPS_H_
#define IDLEGRID_MODELS_SRC_TRAINING_OPS_H_

#include <random>
#include <string>

#include <torch/torch.h>

namespace idlegrid::models {

// Cross-entropy plus `dice_weight` times soft Dice, over labelled voxels only. logits
// [B, K, ...]; target [B, ...] int64 with 0 = unlabelled and 1..K the classes; class_weights
// [K] or undefined. Unlabelled voxels contribute nothing, not even to the gradient.
torch::Tensor SparseSegmentationLoss(const torch::Tensor& logits, const torch::Tensor& target,
                                     const torch::Tensor& class_weights, double dice_weight = 1.0);

// Neighbor2Neighbor (Huang et al. 2021): two sub-images of each 2x2 cell's neighbouring
// pixels are each other's noisy target; `gamma` weighs the consistency term, measured on
// the first quarter of the batch (at least one patch). noisy [B, C, H, W] with even H and W.
torch::Tensor Neighbor2NeighborLoss(torch::nn::AnyModule& net, const torch::Tensor& noisy,
                                    double gamma, at::Generator& gen);

// In-place on one sample: image [C, (D,) H, W] and labels [(D,) H, W] (int64, may be
// undefined for denoising). `level` as ModelConfig::augment: "flips" flips every axis,
// "rot90" adds 90-degree rotations (square patches), "full" adds a small rotation and
// scaling and, with `intensity`, intensity changes (contrast, brightness, gamma, noise,
// blur). All random choices come from `rng` and `gen`, so a run is reproducible from their
// states.
void Augment(torch::Tensor& image, torch::Tensor& labels, std::mt19937_64& rng, at::Generator& gen,
             const std::string& level, bool intensity);

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_SRC_TRAINING_OPS_H_
