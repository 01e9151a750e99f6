#include "training_ops.h"

#include <cmath>

namespace idlegrid::models {
namespace {

double Uniform(std::mt19937_64& rng, double lo, double hi) {
  return lo + (hi - lo) * (static_cast<double>(rng() >> 11) * 0x1.0p-53);
}
bool Chance(std::mt19937_64& rng, double p) { return Uniform(rng, 0, 1) < p; }

// Separable Gaussian blur of the last two dimensions of [N, H, W].
torch::Tensor Blur(const torch::Tensor& x, double sigma) {
  int64_t r = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(2 * sigma)));
  torch::Tensor k = torch::arange(-r, r + 1, torch::kFloat32);
  k = torch::exp(-(k * k) / (2 * sigma * sigma));
  k = k / k.sum();
  torch::Tensor in = x.unsqueeze(1);  // [N, 1, H, W]
  in = torch::conv2d(torch::replication_pad2d(in, {r, r, 0, 0}), k.view({1, 1, 1, -1}));
  in = torch::conv2d(torch::replication_pad2d(in, {0, 0, r, r}), k.view({1, 1, -1, 1}));
  return in.squeeze(1);
}

}  // namespace

torch::Tensor SparseSegmentationLoss(const torch::Tensor& logits, const torch::Tensor& target,
                                     const torch::Tensor& class_weights, double dice_weight) {
  const int64_t k = logits.size(1);
  torch::Tensor t = target - 1;  // -1 = unlabelled, ignored
  auto ce_options = torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-1);
  if (class_weights.defined()) ce_options.weight(class_weights);
  torch::Tensor ce = torch::nn::functional::cross_entropy(logits, t, ce_options);
  if (dice_weight == 0) return ce;
  // Soft Dice over the batch, on labelled voxels only.
  torch::Tensor mask = (t >= 0).unsqueeze(1).to(logits.scalar_type());            // [B,1,...]
  torch::Tensor probs = torch::softmax(logits, 1) * mask;
  torch::Tensor onehot = torch::one_hot(t.clamp_min(0), k).movedim(-1, 1).to(logits.scalar_type()) * mask;
  std::vector<int64_t> dims = {0};
  for (int64_t d = 2; d < logits.dim(); ++d) dims.push_back(d);
  torch::Tensor inter = (probs * onehot).sum(dims);
  torch::Tensor denom = probs.sum(dims) + onehot.sum(dims);
  torch::Tensor present = (onehot.sum(dims) > 0).to(logits.scalar_type());
  torch::Tensor dice = (2 * inter + 1e-5) / (denom + 1e-5);
  torch::Tensor dice_loss = 1 - (dice * present).sum() / present.sum().clamp_min(1);
  return ce + dice_weight * dice_loss;
}

torch::Tensor Neighbor2NeighborLoss(torch::nn::AnyModule& net, const torch::Tensor& noisy,
                                    double gamma, at::Generator& gen) {
  const int64_t b = noisy.size(0), c = noisy.size(1), h = noisy.size(2) / 2, w = noisy.size(3) / 2;
  // Cells: [B, C, h, w, 4] holding pixels (0,0) (0,1) (1,0) (1,1).
  auto cells = [&](const torch::Tensor& x) {
    const int64_t n = x.size(0);
    return x.view({n, c, h, 2, w, 2}).permute({0, 1, 2, 4, 3, 5}).reshape({n, c, h, w, 4});
  };
  // First pixel at random; the second one of its two 4-neighbours inside the cell.
  torch::Tensor first = torch::randint(0, 4, {b, 1, h, w, 1}, gen, torch::kLong);
  torch::Tensor pick = torch::randint(0, 2, {b, 1, h, w, 1}, gen, torch::kLong);
  static const int64_t kNeighbours[4][2] = {{1, 2}, {0, 3}, {0, 3}, {1, 2}};
  torch::Tensor table = torch::from_blob(const_cast<int64_t*>(&kNeighbours[0][0]), {4, 2}, torch::kLong);
  torch::Tensor second = table.index({first.flatten(), pick.flatten()}).view_as(first);
  first = first.expand({b, c, h, w, 1}).to(noisy.device());
  second = second.expand({b, c, h, w, 1}).to(noisy.device());
  auto sub = [&](const torch::Tensor& x, const torch::Tensor& idx) {
    return cells(x).gather(4, idx).squeeze(4);
  };
  torch::Tensor g1 = sub(noisy, first), g2 = sub(noisy, second);
  torch::Tensor out = net.forward(g1);
  torch::Tensor rec = torch::mse_loss(out, g2);
  // The consistency term needs the network on the full-resolution patch, four times the
  // pixels of a sub-image: over the whole batch that forward pass cost more than half of a
  // step. A quarter of the batch estimates the same mean (4 x 4096 px at 64 px patches), and
  // a step costs 0.6x as much (bench/denoise: 3800 steps and 29.27 dB in 300 s against 2300
  // steps and 29.17 dB).
  const int64_t r = std::max<int64_t>(1, b / 4);
  torch::Tensor full;
  {
    torch::NoGradGuard no_grad;
    full = net.forward(noisy.slice(0, 0, r));
  }
  torch::Tensor reg = torch::mse_loss(out.slice(0, 0, r) - g2.slice(0, 0, r),
                                      sub(full, first.slice(0, 0, r)) - sub(full, second.slice(0, 0, r)));
  return rec + gamma * reg;
}

void Augment(torch::Tensor& image, torch::Tensor& labels, std::mt19937_64& rng, at::Generator& gen,
             const std::string& level, bool intensity) {
  if (level == "none") return;
  const int64_t h = image.dim() - 2, w = image.dim() - 1;          // image dims
  const int64_t lh = labels.defined() ? labels.dim() - 2 : 0, lw = lh + 1;
  auto flip = [&](int64_t di, int64_t dl) {
    image = image.flip({di});
    if (labels.defined()) labels = labels.flip({dl});
  };
  if (Chance(rng, 0.5)) flip(w, lw);
  if (Chance(rng, 0.5)) flip(h, lh);
  if (image.dim() == 4 && Chance(rng, 0.5)) flip(1, 0);  // 3D: depth
  if (level == "flips") return;
  if (image.size(h) == image.size(w)) {
    int64_t k = static_cast<int64_t>(rng() % 4);
    if (k != 0) {
      image = image.rot90(k, {h, w});
      if (labels.defined()) labels = labels.rot90(k, {lh, lw});
    }
  }
  if (level == "rot90") return;
  if (Chance(rng, 0.3)) {  // small rotation and scaling, same for every slice of a 3D patch
    double angle = Uniform(rng, -0.26, 0.26), scale = Uniform(rng, 0.9, 1.1);
    double ca = std::cos(angle) / scale, sa = std::sin(angle) / scale;
    torch::Tensor theta = torch::tensor({{ca, -sa, 0.0}, {sa, ca, 0.0}}, torch::kFloat32).unsqueeze(0);
    const int64_t H = image.size(h), W = image.size(w);
    torch::Tensor flat = image.reshape({1, -1, H, W});
    torch::Tensor grid = torch::nn::functional::affine_grid(theta, {1, flat.size(1), H, W}, false);
    namespace F = torch::nn::functional;
    flat = F::grid_sample(flat, grid, F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kReflection).align_corners(false));
    image = flat.reshape(image.sizes());
    if (labels.defined()) {
      torch::Tensor lf = labels.to(torch::kFloat32).reshape({1, -1, H, W});
      // Outside the original patch nothing is known: pad with 0 (unlabelled).
      lf = F::grid_sample(lf, grid, F::GridSampleFuncOptions().mode(torch::kNearest).padding_mode(torch::kZeros).align_corners(false));
      labels = lf.reshape(labels.sizes()).round().to(torch::kLong);
    }
  }
  if (!intensity) return;
  if (Chance(rng, 0.5)) {  // contrast around the mean, then brightness
    torch::Tensor mean = image.mean();
    image = (image - mean) * Uniform(rng, 0.75, 1.25) + mean + Uniform(rng, -0.1, 0.1);
  }
  if (Chance(rng, 0.3)) {  // gamma on the patch's own range
    torch::Tensor lo = image.min(), hi = image.max();
    torch::Tensor range = (hi - lo).clamp_min(1e-6);
    image = ((image - lo) / range).pow(Uniform(rng, 0.7, 1.5)) * range + lo;
  }
  if (Chance(rng, 0.15)) {
    image = image + torch::randn(image.sizes(), gen, torch::kFloat32) * Uniform(rng, 0.0, 0.1);
  }
  if (Chance(rng, 0.2)) {
    const int64_t H = image.size(h), W = image.size(w);
    image = Blur(image.reshape({-1, H, W}), Uniform(rng, 0.5, 1.0)).reshape(image.sizes());
  }
}

}  // namespace idlegrid::models
