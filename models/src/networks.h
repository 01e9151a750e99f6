// The built-in networks (internal to models/: includes LibTorch). All map an input of
// [N, C_in, (D,) H, W] to [N, C_out, (D,) H, W] at the same resolution.
#ifndef IDLEGRID_MODELS_SRC_NETWORKS_H_
#define IDLEGRID_MODELS_SRC_NETWORKS_H_

#include <torch/torch.h>

#include "idlegrid/models/model_config.h"

namespace idlegrid::models {

struct UNetOptions {
  int64_t dims = 2;  // 2 or 3
  int64_t in_channels = 1;
  int64_t out_channels = 2;
  int64_t base_filters = 16;
  int64_t depth = 3;
  bool batch_norm = true;
};

// U-Net (Ronneberger et al. 2015) with batch norm and leaky ReLU:
// two 3x3(x3) convolutions per level, max-pool down, transposed convolution up, skips.
class UNetImpl : public torch::nn::Module {
 public:
  explicit UNetImpl(const UNetOptions& options);
  torch::Tensor forward(torch::Tensor x);

 private:
  UNetOptions options_;
  torch::nn::ModuleList down_{nullptr};  // conv blocks, top to bottom (depth + 1)
  torch::nn::ModuleList up_{nullptr};    // transposed convolutions, bottom to top
  torch::nn::ModuleList merge_{nullptr}; // conv blocks after each skip concatenation
  torch::nn::AnyModule head_;
};
TORCH_MODULE(UNet);

struct DilatedNetOptions {
  int64_t in_channels = 1;
  int64_t out_channels = 2;
  int64_t filters = 32;
  int64_t blocks = 6;  // dilations 1, 2, 4, 8, ... then back down
  bool batch_norm = true;
};

// Context-aggregation network (Yu & Koltun 2016 style): residual blocks of dilated 3x3
// convolutions at full resolution; differs in kind from the U-Nets (no pooling, no skips).
class DilatedNetImpl : public torch::nn::Module {
 public:
  explicit DilatedNetImpl(const DilatedNetOptions& options);
  torch::Tensor forward(torch::Tensor x);

 private:
  torch::nn::Conv2d stem_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  torch::nn::Conv2d head_{nullptr};
};
TORCH_MODULE(DilatedNet);

// The network a configuration names; its input channels include 2.5D context slices.
torch::nn::AnyModule BuildNetwork(const ModelConfig& config);
// The module behind an AnyModule (for parameters, train/eval, save/load).
std::shared_ptr<torch::nn::Module> ModuleOf(const torch::nn::AnyModule& net);
// Input channels the network takes: in_channels * (2k + 1) for unet25d.
int64_t NetworkInChannels(const ModelConfig& config);

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_SRC_NETWORKS_H_
