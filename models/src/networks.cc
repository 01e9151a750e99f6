#include "networks.h"

namespace idlegrid::models {
namespace {

torch::nn::AnyModule Conv(int64_t dims, int64_t in, int64_t out, int64_t kernel,
                          int64_t dilation = 1) {
  int64_t pad = dilation * (kernel / 2);
  if (dims == 3) {
    return torch::nn::AnyModule(torch::nn::Conv3d(
        torch::nn::Conv3dOptions(in, out, kernel).padding(pad).dilation(dilation)));
  }
  return torch::nn::AnyModule(torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).padding(pad).dilation(dilation)));
}

// Batch norm, not nnU-Net's instance norm: with small CPU patches of sparse scribbles,
// instance statistics of a training patch (mostly one class) differ from those of an
// inference tile (many classes), which cost 0.2 Dice on the texture benchmark; batch norm's
// running statistics make a tile's output independent of what else is in it.
torch::nn::AnyModule Norm(int64_t dims, int64_t channels, bool batch_norm) {
  if (!batch_norm) return torch::nn::AnyModule(torch::nn::Identity());
  if (dims == 3) {
    return torch::nn::AnyModule(torch::nn::BatchNorm3d(channels));
  }
  return torch::nn::AnyModule(torch::nn::BatchNorm2d(channels));
}

// conv -> norm -> leaky ReLU, twice.
torch::nn::Sequential ConvBlock(int64_t dims, int64_t in, int64_t out, bool batch_norm) {
  torch::nn::Sequential block;
  for (int i = 0; i < 2; ++i) {
    block->push_back(Conv(dims, i == 0 ? in : out, out, 3));
    block->push_back(Norm(dims, out, batch_norm));
    block->push_back(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.01)));
  }
  return block;
}

}  // namespace

UNetImpl::UNetImpl(const UNetOptions& options) : options_(options) {
  down_ = register_module("down", torch::nn::ModuleList());
  up_ = register_module("up", torch::nn::ModuleList());
  merge_ = register_module("merge", torch::nn::ModuleList());
  int64_t f = options.base_filters;
  for (int64_t level = 0; level <= options.depth; ++level) {
    int64_t in = level == 0 ? options.in_channels : f << (level - 1);
    down_->push_back(ConvBlock(options.dims, in, f << level, options.batch_norm));
  }
  for (int64_t level = options.depth; level >= 1; --level) {
    int64_t in = f << level, out = f << (level - 1);
    if (options.dims == 3) {
      up_->push_back(torch::nn::ConvTranspose3d(torch::nn::ConvTranspose3dOptions(in, out, 2).stride(2)));
    } else {
      up_->push_back(torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(in, out, 2).stride(2)));
    }
    merge_->push_back(ConvBlock(options.dims, 2 * out, out, options.batch_norm));
  }
  head_ = Conv(options.dims, f, options.out_channels, 1);
  register_module("head", head_.ptr());
}

torch::Tensor UNetImpl::forward(torch::Tensor x) {
  std::vector<torch::Tensor> skips;
  for (size_t level = 0; level < down_->size(); ++level) {
    if (level > 0) {
      x = options_.dims == 3 ? torch::max_pool3d(x, 2) : torch::max_pool2d(x, 2);
    }
    x = down_[level]->as<torch::nn::Sequential>()->forward(x);
    skips.push_back(x);
  }
  for (size_t i = 0; i < up_->size(); ++i) {
    x = options_.dims == 3 ? up_[i]->as<torch::nn::ConvTranspose3d>()->forward(x)
                           : up_[i]->as<torch::nn::ConvTranspose2d>()->forward(x);
    x = torch::cat({x, skips[skips.size() - 2 - i]}, 1);
    x = merge_[i]->as<torch::nn::Sequential>()->forward(x);
  }
  return head_.forward(x);
}

DilatedNetImpl::DilatedNetImpl(const DilatedNetOptions& options) {
  stem_ = register_module(
      "stem", torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_channels, options.filters, 3).padding(1)));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.blocks; ++i) {
    // Dilations rise to 2^(blocks/2) and come back down so that the last layers see fine
    // detail again.
    int64_t half = (options.blocks + 1) / 2;
    int64_t dilation = int64_t{1} << (i < half ? i : options.blocks - 1 - i);
    torch::nn::Sequential block;
    block->push_back(Conv(2, options.filters, options.filters, 3, dilation));
    block->push_back(Norm(2, options.filters, options.batch_norm));
    block->push_back(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.01)));
    block->push_back(Conv(2, options.filters, options.filters, 3, 1));
    block->push_back(Norm(2, options.filters, options.batch_norm));
    blocks_->push_back(block);
  }
  head_ = register_module(
      "head", torch::nn::Conv2d(torch::nn::Conv2dOptions(options.filters, options.out_channels, 1)));
}

torch::Tensor DilatedNetImpl::forward(torch::Tensor x) {
  x = torch::leaky_relu(stem_->forward(x), 0.01);
  for (const auto& block : *blocks_) {
    x = torch::leaky_relu(x + block->as<torch::nn::Sequential>()->forward(x), 0.01);
  }
  return head_->forward(x);
}

int64_t NetworkInChannels(const ModelConfig& config) {
  return config.architecture == "unet25d" ? config.in_channels * (2 * config.context_slices + 1)
                                          : config.in_channels;
}

torch::nn::AnyModule BuildNetwork(const ModelConfig& config) {
  if (config.architecture == "dilated2d") {
    DilatedNetOptions o;
    o.in_channels = NetworkInChannels(config);
    o.out_channels = config.OutChannels();
    o.filters = config.base_filters;
    o.blocks = config.depth * 2;
    o.batch_norm = config.norm_layer == "batch";
    return torch::nn::AnyModule(DilatedNet(o));
  }
  UNetOptions o;
  o.dims = IsThreeD(config.architecture) ? 3 : 2;
  o.in_channels = NetworkInChannels(config);
  o.out_channels = config.OutChannels();
  o.base_filters = config.base_filters;
  o.depth = config.depth;
  o.batch_norm = config.norm_layer == "batch";
  return torch::nn::AnyModule(UNet(o));
}

std::shared_ptr<torch::nn::Module> ModuleOf(const torch::nn::AnyModule& net) { return net.ptr(); }

}  // namespace idlegrid::models
