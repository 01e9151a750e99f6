#include "networks.h"

#include <catch2/catch.hpp>

#include "model_fixtures.h"

namespace idlegrid::models {
namespace {

// The U-Net written with torch's own modules only: what UNetImpl::forward, which computes
// the head, the transposed convolutions and the layout its own way for speed, must equal.
torch::Tensor ReferenceUNet(torch::nn::Module& net, int64_t dims, torch::Tensor x) {
  auto children = net.named_children();
  auto& down = *children["down"]->as<torch::nn::ModuleList>();
  auto& up = *children["up"]->as<torch::nn::ModuleList>();
  auto& merge = *children["merge"]->as<torch::nn::ModuleList>();
  std::vector<torch::Tensor> skips;
  for (size_t level = 0; level < down.size(); ++level) {
    if (level > 0) x = dims == 3 ? torch::max_pool3d(x, 2) : torch::max_pool2d(x, 2);
    x = down[level]->as<torch::nn::Sequential>()->forward(x);
    skips.push_back(x);
  }
  for (size_t i = 0; i < up.size(); ++i) {
    x = dims == 3 ? up[i]->as<torch::nn::ConvTranspose3d>()->forward(x)
                  : up[i]->as<torch::nn::ConvTranspose2d>()->forward(x);
    x = torch::cat({x, skips[skips.size() - 2 - i]}, 1);
    x = merge[i]->as<torch::nn::Sequential>()->forward(x);
  }
  return dims == 3 ? children["head"]->as<torch::nn::Conv3d>()->forward(x)
                   : children["head"]->as<torch::nn::Conv2d>()->forward(x);
}

TEST_CASE("the U-Nets compute what torch's own modules compute, forward and backward", "[models][net]") {
  for (const char* arch : {"unet2d", "unet3d"}) {
    INFO(arch);
    const int64_t dims = std::string(arch) == "unet3d" ? 3 : 2;
    ModelConfig c = testing::TinyConfig(arch);  // depth 2, 3 classes
    c.base_filters = 4;  // small activations: float rounding stays far below the tolerances
    torch::manual_seed(3);
    torch::nn::AnyModule net = BuildNetwork(c);
    auto module = ModuleOf(net);
    // Random, not initial, biases so that a misplaced bias would show.
    {
      torch::NoGradGuard no_grad;
      for (auto& p : module->parameters()) p.uniform_(-0.5, 0.5);
    }
    module->eval();  // batch norm from running statistics: the two passes see the same normalisation
    torch::Tensor x = dims == 3 ? torch::randn({2, 1, 8, 12, 16}) : torch::randn({2, 1, 12, 16});
    torch::Tensor ours = net.forward(x);
    torch::Tensor reference = ReferenceUNet(*module, dims, x);
    REQUIRE(ours.sizes() == reference.sizes());
    CHECK(ours.is_contiguous());
    CHECK((ours - reference).abs().max().item<double>() < 1e-5);

    // Gradients of every parameter agree too.
    torch::Tensor g = torch::randn_like(ours);
    module->zero_grad();
    (ours * g).sum().backward();
    std::vector<torch::Tensor> ours_grad;
    for (auto& p : module->parameters()) ours_grad.push_back(p.grad().clone());
    module->zero_grad();
    (ReferenceUNet(*module, dims, x) * g).sum().backward();
    auto params = module->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      CHECK((ours_grad[i] - params[i].grad()).abs().max().item<double>() < 1e-4);
    }
  }
}

TEST_CASE("the dilated network's head is the 1x1 convolution of its module", "[models][net]") {
  ModelConfig c = testing::TinyConfig("dilated2d");
  c.base_filters = 4;
  torch::manual_seed(4);
  torch::nn::AnyModule net = BuildNetwork(c);
  auto module = ModuleOf(net);
  module->eval();
  torch::Tensor x = torch::randn({2, 1, 10, 14});
  auto children = module->named_children();
  torch::Tensor h = torch::leaky_relu(children["stem"]->as<torch::nn::Conv2d>()->forward(x), 0.01);
  for (const auto& block : *children["blocks"]->as<torch::nn::ModuleList>()) {
    h = torch::leaky_relu(h + block->as<torch::nn::Sequential>()->forward(h), 0.01);
  }
  torch::Tensor reference = children["head"]->as<torch::nn::Conv2d>()->forward(h);
  torch::Tensor ours = net.forward(x);
  REQUIRE(ours.sizes() == reference.sizes());
  CHECK((ours - reference).abs().max().item<double>() < 1e-5);
}

}  // namespace
}  // namespace idlegrid::models
