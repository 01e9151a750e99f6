// Conversions between Volume and tensors, and the tiled prediction shared by validation and
// inference (internal to models/).
#ifndef IDLEGRID_MODELS_SRC_TENSORS_H_
#define IDLEGRID_MODELS_SRC_TENSORS_H_

#include <torch/torch.h>

#include <functional>

#include "idlegrid/models/model_config.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid::models {

// [Z, C, Y, X] float32: intensities clipped and z-scored with `norm`.
torch::Tensor NormalizedTensor(const Volume& image, const Normalization& norm);
// [Z, Y, X] int64 labels from a uint8 volume.
torch::Tensor LabelTensor(const Volume& labels);

// Positions of tiles of size `tile` covering [0, length): evenly spread with at least 50%
// overlap, the first at 0 and the last at length - tile. They depend only on the length, so
// a slab and the whole volume use the same grid.
std::vector<int64_t> TilePositions(int64_t length, int64_t tile);

struct PredictOptions {
  // Test-time augmentation: the average over 1 (none), 4 (the in-plane flips) or 8 views
  // (the flips of the image and of its transpose: all eight symmetries of a square).
  int tta_views = 1;
  // [out_end - out_begin, Y, X] bool: when defined, tiles that cover none of these voxels are
  // skipped (their voxels come out undefined). Every tile covering a wanted voxel still
  // runs, so wanted voxels get exactly the values of a full prediction.
  torch::Tensor wanted;
  // Called after each tile with the tiles done and the tiles to run in all; returning false
  // stops the prediction before the next tile (a SIGTERM must not wait for a whole slab: one
  // of 32M voxels takes minutes on one CPU thread). After the last tile the answer does not
  // matter: the prediction is complete. Empty: runs to the end.
  std::function<bool(int64_t done, int64_t total)> on_tile;
};

// Predicts output slices [out_begin, out_end) (global indices). `input` [Zs, C, Y, X] holds
// global slices [input_offset, input_offset + Zs), enough to cover the halo the config
// needs; total_depth is the whole volume's depth (it anchors the tile grid in Z and clamps
// 2.5D context). Returns [out_end - out_begin, K, Y, X]: class probabilities (segmentation)
// or the denoised, still normalised image (denoising). Tiles run one at a time in a fixed
// global order, so a slab reproduces the whole volume's values. An undefined tensor when
// options.on_tile stopped it.
torch::Tensor PredictSlices(torch::nn::AnyModule& net, const ModelConfig& config,
                            const torch::Tensor& input, int64_t input_offset, int64_t out_begin,
                            int64_t out_end, int64_t total_depth,
                            const PredictOptions& options = {});

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_SRC_TENSORS_H_
