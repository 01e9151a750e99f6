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

// LibTorch 1.13's CPU kernels are slow for some layers this small, so the networks compute
// three things their own way (measured over 16 patches of 64 px, 8 filters, 2 threads):
//  * a 1x1 convolution to a few channels (the head, 8 -> 3: 17 ms forward and 24 ms
//    backward, more than all the 3x3 convolutions together) is a matrix product over the
//    channel dimension;
//  * the transposed convolution of kernel 2 and stride 2 (not run by oneDNN: 8-12 ms each,
//    forward + backward; 23 ms in 3D) is a 1x1 convolution to 2^dims times the channels
//    followed by a pixel shuffle (1-7 ms; 3 ms in 3D);
//  * 2D networks run in channels-last layout: oneDNN's backward pass of a 3x3 convolution
//    8 -> 8 at 64 px takes 23 ms in NCHW and 2 ms in NHWC (3D gains nothing from it).
// A U-Net step falls from 95 to about 50 ms. The parameters keep the layout of torch's own
// modules, so packages and checkpoints are the same as with the modules' forward().

// A 1x1 convolution (weight [out, in, 1, 1(, 1)]) as a matrix product over channels; the
// result is a view with the channels last in memory.
torch::Tensor Pointwise(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const int64_t dims = x.dim() - 2;
  std::vector<int64_t> to_last{0}, back{0, dims + 1};
  for (int64_t d = 2; d < x.dim(); ++d) to_last.push_back(d);
  to_last.push_back(1);
  for (int64_t d = 1; d <= dims; ++d) back.push_back(d);
  torch::Tensor w = weight.reshape({weight.size(0), weight.size(1)});
  return torch::nn::functional::linear(x.permute(to_last), w, bias).permute(back);
}

// Transposed convolution, kernel 2, stride 2, weight [in, out, 2, 2(, 2)]: each input voxel
// maps to its own 2x2(x2) block of output, whose entries are the 1x1 convolutions with
// weight[:, :, i, j(, k)].
torch::Tensor UpConv(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const int64_t dims = x.dim() - 2, in = weight.size(0), out = weight.size(1);
  const int64_t block = int64_t{1} << dims;
  std::vector<int64_t> order{1};
  for (int64_t d = 2; d < weight.dim(); ++d) order.push_back(d);
  order.push_back(0);
  std::vector<int64_t> w_shape{out * block, in};
  for (int64_t d = 0; d < dims; ++d) w_shape.push_back(1);
  torch::Tensor w = weight.permute(order).reshape(w_shape);
  torch::Tensor b = bias.repeat_interleave(block);
  if (dims == 2) return torch::pixel_shuffle(torch::conv2d(x, w, b), 2);
  torch::Tensor y = torch::conv3d(x, w, b);
  const int64_t n = y.size(0), dz = y.size(2), h = y.size(3), wd = y.size(4);
  return y.view({n, out, 2, 2, 2, dz, h, wd})
      .permute({0, 1, 5, 2, 6, 3, 7, 4})
      .reshape({n, out, 2 * dz, 2 * h, 2 * wd});
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
  const bool two_d = options_.dims == 2;
  if (two_d) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
  std::vector<torch::Tensor> skips;
  for (size_t level = 0; level < down_->size(); ++level) {
    if (level > 0) {
      x = options_.dims == 3 ? torch::max_pool3d(x, 2) : torch::max_pool2d(x, 2);
    }
    x = down_[level]->as<torch::nn::Sequential>()->forward(x);
    skips.push_back(x);
  }
  for (size_t i = 0; i < up_->size(); ++i) {
    const auto up = up_[i]->named_parameters(/*recurse=*/false);
    x = UpConv(x, up["weight"], up["bias"]);
    x = torch::cat({x, skips[skips.size() - 2 - i]}, 1);
    x = merge_[i]->as<torch::nn::Sequential>()->forward(x);
  }
  const auto head = head_.ptr()->named_parameters(/*recurse=*/false);
  return Pointwise(x, head["weight"], head["bias"]).contiguous();
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
  x = x.contiguous(torch::MemoryFormat::ChannelsLast);
  x = torch::leaky_relu(stem_->forward(x), 0.01);
  for (const auto& block : *blocks_) {
    x = torch::leaky_relu(x + block->as<torch::nn::Sequential>()->forward(x), 0.01);
  }
  return Pointwise(x, head_->weight, head_->bias).contiguous();
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
