#include "tensors.h"

#include "networks.h"

#include <cmath>
#include <limits>
#include <map>

namespace idlegrid::models {

torch::Tensor NormalizedTensor(const Volume& image, const Normalization& norm) {
  const VolumeShape& s = image.shape();
  torch::Tensor t;
  switch (image.dtype()) {
    case DType::kUInt8:
      t = torch::from_blob(const_cast<uint8_t*>(image.bytes()), {s.z, s.y, s.x, s.c}, torch::kUInt8);
      break;
    case DType::kUInt16:  // no uint16 in LibTorch 1.13: widen through int32
      t = torch::from_blob(const_cast<uint8_t*>(image.bytes()), {s.z, s.y, s.x, s.c}, torch::kInt16)
              .to(torch::kInt32)
              .bitwise_and(0xFFFF);
      break;
    case DType::kFloat32:
      t = torch::from_blob(const_cast<uint8_t*>(image.bytes()), {s.z, s.y, s.x, s.c}, torch::kFloat32);
      break;
  }
  t = t.to(torch::kFloat32).clamp(norm.clip_low, norm.clip_high);
  t = (t - norm.mean) / norm.std;
  return t.permute({0, 3, 1, 2}).contiguous();
}

torch::Tensor LabelTensor(const Volume& labels) {
  const VolumeShape& s = labels.shape();
  return torch::from_blob(const_cast<uint8_t*>(labels.bytes()), {s.z, s.y, s.x}, torch::kUInt8)
      .to(torch::kInt64);
}

std::vector<int64_t> TilePositions(int64_t length, int64_t tile) {
  if (tile >= length) return {0};
  const int64_t step = std::max<int64_t>(1, tile / 2);
  const int64_t n = (length - tile + step - 1) / step + 1;
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    out.push_back(static_cast<int64_t>(std::llround(static_cast<double>(i) * static_cast<double>(length - tile) /
                                                    static_cast<double>(n - 1))));
  }
  return out;
}

namespace {

// Gaussian importance of each voxel of a tile (sigma 1/8 of the tile), so overlapping tiles
// blend smoothly and tile borders count least.
torch::Tensor Importance(const std::vector<int64_t>& size) {
  torch::Tensor w = torch::ones({1}, torch::kFloat32);
  for (int64_t n : size) {
    torch::Tensor r = torch::arange(n, torch::kFloat32) - (static_cast<double>(n) - 1) / 2;
    double sigma = std::max(1.0, static_cast<double>(n) / 8);
    torch::Tensor g = torch::exp(-(r * r) / (2 * sigma * sigma));
    w = w.unsqueeze(-1) * g;
  }
  w = w.squeeze(0);
  w = w / w.max();
  return w.clamp_min(1e-3);
}

// Largest multiple of m not above v.
int64_t FloorTo(int64_t v, int64_t m) { return std::max<int64_t>(m, v / m * m); }

// Runs the network on its own device and returns the output on the CPU, where tiles are
// blended. The views of test-time augmentation run in batches of about batch_voxels.
torch::Tensor Forward(torch::nn::AnyModule& net, const ModelConfig& config, torch::Tensor x,
                      int views, int64_t batch_voxels) {
  const torch::Device device = ModuleOf(net)->parameters().front().device();
  x = x.to(device);
  auto run = [&](const torch::Tensor& in) {
    torch::Tensor out = net.forward(in);
    return (config.task == Task::kSegment ? torch::softmax(out, 1) : out).to(torch::kCPU);
  };
  if (views <= 1) return run(x);
  const int64_t h = x.dim() - 2, w = x.dim() - 1;
  // The flips of x and of its transpose (exact for any tile shape: every layer is
  // convolutional), each with the transform that undoes it.
  const std::vector<std::vector<int64_t>> flips = {{}, {w}, {h}, {h, w}};
  std::vector<torch::Tensor> in;
  for (const auto& f : flips) in.push_back(f.empty() ? x : x.flip(f));
  if (views >= 8) {
    const torch::Tensor t = x.transpose(h, w).contiguous();
    for (const auto& f : flips) in.push_back(f.empty() ? t : t.flip(f));
  }
  const int64_t per_view = x.numel() / std::max<int64_t>(x.size(1), 1);
  const auto batch = static_cast<size_t>(std::max<int64_t>(1, batch_voxels / std::max<int64_t>(per_view, 1)));
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < in.size();) {
    size_t j = i + 1;  // views of one shape (a transposed tile of a non-square one differs)
    while (j < in.size() && j - i < batch && in[j].sizes() == in[i].sizes()) ++j;
    std::vector<torch::Tensor> group(in.begin() + static_cast<std::ptrdiff_t>(i), in.begin() + static_cast<std::ptrdiff_t>(j));
    for (torch::Tensor& o : run(torch::cat(group, 0)).split(1, 0)) out.push_back(o);
    i = j;
  }
  auto undo = [&](size_t v) {
    const auto& f = flips[v % 4];
    torch::Tensor o = f.empty() ? out[v] : out[v].flip(f);
    return v >= 4 ? o.transpose(h, w) : o;
  };
  auto sum4 = [&](size_t first) { return undo(first) + undo(first + 1) + undo(first + 2) + undo(first + 3); };
  if (views < 8) return sum4(0) / 4;
  return (sum4(0) + sum4(4)) / 8;
}

}  // namespace

bool PredictTiles(torch::nn::AnyModule& net, const ModelConfig& config, int64_t height, int64_t width,
                     int64_t out_begin, int64_t out_end, int64_t total_depth, const PredictOptions& options,
                     const SliceStream& stream) {
  torch::NoGradGuard no_grad;
  const int64_t Y = height, X = width;
  const int64_t k_out = config.OutChannels();
  const int64_t multiple = config.architecture == "dilated2d" ? 1 : int64_t{1} << config.depth;
  const bool three_d = IsThreeD(config.architecture);
  // Inference tiles: twice the training patch in-plane (fewer borders), within the image;
  // in depth the 3D patch, or one slice.
  const int64_t ty = FloorTo(std::min(Y, 2 * config.patch_y), multiple);
  const int64_t tx = FloorTo(std::min(X, 2 * config.patch_x), multiple);
  const int64_t tz = three_d ? config.patch_z : 1;
  const std::vector<int64_t> ys = TilePositions(Y, ty), xs = TilePositions(X, tx);
  const std::vector<int64_t> zs = three_d ? TilePositions(total_depth, tz) : std::vector<int64_t>{};

  // The tiles to run, in their fixed global order: (z0, y0, x0), where z0 is a 3D tile's
  // first slice or a 2D net's slice.
  struct Tile {
    int64_t z0, y0, x0;
  };
  std::vector<Tile> tiles;
  auto add_plane = [&](int64_t z0) {
    const int64_t lo = std::max(z0, out_begin), hi = std::min(z0 + tz, out_end);
    if (lo >= hi) return;
    for (int64_t y0 : ys) {
      for (int64_t x0 : xs) {
        if (options.wanted.defined() &&
            !options.wanted.slice(0, lo - out_begin, hi - out_begin).slice(1, y0, y0 + ty).slice(2, x0, x0 + tx).any().item<bool>()) {
          continue;
        }
        tiles.push_back({z0, y0, x0});
      }
    }
  };
  if (three_d) {
    for (int64_t z0 : zs) add_plane(z0);
  } else {
    for (int64_t z = out_begin; z < out_end; ++z) add_plane(z);
  }

  // Accumulators of the output slices some tile has reached and not yet handed over. Tiles
  // run in increasing z0 and cover [z0, z0 + tz): once a tile starts at z0, every slice
  // below it is final. So at most tz slices are open at a time, whatever the slab's depth.
  struct Open {
    torch::Tensor acc, weight;  // [K, Y, X], [1, Y, X]
  };
  std::map<int64_t, Open> open;
  int64_t next_out = out_begin;
  auto hand_over = [&](int64_t below) {  // emits slices [next_out, below)
    below = std::min(below, out_end);
    for (; next_out < below; ++next_out) {
      auto it = open.find(next_out);
      torch::Tensor out = it == open.end()  // no tile wanted this slice: undefined (0 / 0)
                              ? torch::full({1, k_out, Y, X}, std::numeric_limits<float>::quiet_NaN())
                              : (it->second.acc / it->second.weight).unsqueeze(0);
      if (it != open.end()) open.erase(it);
      if (!stream.output(next_out, out)) return false;
    }
    return true;
  };
  const torch::Tensor imp = three_d ? Importance({tz, ty, tx}) : Importance({ty, tx}).unsqueeze(0);  // [tz, ty, tx]
  const int64_t k = config.architecture == "unet25d" ? config.context_slices : 0;
  torch::Tensor source;  // the network's input for the current z0: [1, C, tz, Y, X] or [1, C', Y, X]
  int64_t source_z = -1;
  for (size_t i = 0; i < tiles.size(); ++i) {
    const Tile& t = tiles[i];
    if (t.z0 != source_z) {
      if (!hand_over(t.z0)) return false;
      source_z = t.z0;
      std::vector<torch::Tensor> planes;  // 3D: tz slices in depth; 2.5D: 2k+1 neighbours as channels
      if (three_d) {
        for (int64_t z = t.z0; z < t.z0 + tz; ++z) planes.push_back(stream.input(z));
        source = torch::stack(planes, 1).unsqueeze(0);
      } else {
        for (int64_t dz = -k; dz <= k; ++dz) planes.push_back(stream.input(std::clamp<int64_t>(t.z0 + dz, 0, total_depth - 1)));
        source = torch::cat(planes, 0).unsqueeze(0);
      }
    }
    torch::Tensor tile = source.slice(-2, t.y0, t.y0 + ty).slice(-1, t.x0, t.x0 + tx);
    torch::Tensor out = Forward(net, config, tile, options.tta_views, options.batch_voxels)[0];  // [K, tz, ty, tx] or [K, ty, tx]
    if (!three_d) out = out.unsqueeze(1);
    out = out * imp;
    const int64_t lo = std::max(t.z0, out_begin), hi = std::min(t.z0 + tz, out_end);
    for (int64_t z = lo; z < hi; ++z) {
      Open& o = open[z];
      if (!o.acc.defined()) {
        o.acc = torch::zeros({k_out, Y, X}, torch::kFloat32);
        o.weight = torch::zeros({1, Y, X}, torch::kFloat32);
      }
      o.acc.slice(1, t.y0, t.y0 + ty).slice(2, t.x0, t.x0 + tx) += out.select(1, z - t.z0);
      o.weight.slice(1, t.y0, t.y0 + ty).slice(2, t.x0, t.x0 + tx) += imp[z - t.z0];
    }
    const int64_t done = static_cast<int64_t>(i) + 1, total = static_cast<int64_t>(tiles.size());
    if (options.on_tile && !options.on_tile(done, total) && done < total) return false;  // after the last, done anyway
  }
  return hand_over(out_end);
}

torch::Tensor PredictSlices(torch::nn::AnyModule& net, const ModelConfig& config,
                            const torch::Tensor& input, int64_t input_offset, int64_t out_begin,
                            int64_t out_end, int64_t total_depth, const PredictOptions& options) {
  torch::Tensor result = torch::empty({out_end - out_begin, config.OutChannels(), input.size(2), input.size(3)},
                                      torch::kFloat32);
  SliceStream stream;
  stream.input = [&](int64_t z) { return input[z - input_offset]; };
  stream.output = [&](int64_t z, const torch::Tensor& out) {
    result.slice(0, z - out_begin, z - out_begin + out.size(0)).copy_(out);
    return true;
  };
  if (!PredictTiles(net, config, input.size(2), input.size(3), out_begin, out_end, total_depth, options, stream)) {
    return {};
  }
  return result;
}

}  // namespace idlegrid::models
