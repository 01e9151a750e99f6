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
  // The views run as batches of about this many voxels (a 128 x 128 tile is mostly
  // per-call overhead on a CPU: its four flips run as one batch); 0: one view per call.
  int64_t batch_voxels = int64_t{1} << 18;
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

// Where a streamed prediction reads its input and puts its output.
struct SliceStream {
  // Global slice z as [C, Y, X] float32, normalised. Asked for in a window that moves forward
  // (tz slices of a 3D net, 2k+1 of a 2.5D one); may throw to abandon the prediction.
  std::function<torch::Tensor(int64_t z)> input;
  // Output slice z, final, as [1, K, Y, X] on the CPU; called for every z of [out_begin,
  // out_end) in order, each once. Returning false stops the prediction.
  std::function<bool(int64_t z, const torch::Tensor& out)> output;
};

// PredictSlices without the whole slab in memory: at most the network's window of input
// slices and tz open output slices at a time. The same tiles in the same order, so the same
// values. False when stopped (options.on_tile or stream.output).
bool PredictTiles(torch::nn::AnyModule& net, const ModelConfig& config, int64_t height, int64_t width,
                     int64_t out_begin, int64_t out_end, int64_t total_depth, const PredictOptions& options,
                     const SliceStream& stream);

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
