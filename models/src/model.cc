#include "idlegrid/models/model.h"

#include <torch/torch.h>

#include "archive_util.h"
#include "idlegrid/models/config_json.h"
#include "networks.h"
#include "tensors.h"

namespace idlegrid::models {

struct Model::Impl {
  ModelConfig config;
  Json metadata;
  InferenceOptions options;
  torch::Device device{torch::kCPU};
  torch::nn::AnyModule net;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::string Model::WeightsDigest() const { return ParameterDigest(*ModuleOf(impl_->net)); }
Model::~Model() = default;

StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path, const InferenceOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  try {
    torch::serialize::InputArchive a, model;
    a.load_from(path);
    if (ReadString(a, "format") != "idlegrid-model-1") {
      return DataLossError(path + " is not an idlegrid model package");
    }
    StatusOr<Json> config_json = ParseJson(ReadString(a, "config"));
    if (!config_json.ok()) return DataLossError(path + ": corrupt configuration");
    IDLEGRID_ASSIGN_OR_RETURN(impl->config, ConfigFromJson(*config_json));
    StatusOr<Json> meta = ParseJson(ReadString(a, "metadata"));
    if (!meta.ok()) return DataLossError(path + ": corrupt metadata");
    impl->metadata = std::move(*meta);
    impl->device = torch::Device(options.device);
    if (impl->device.is_cuda() && !torch::cuda::is_available()) {
      return FailedPreconditionError("CUDA is not available on this machine");
    }
    impl->net = BuildNetwork(impl->config);
    a.read("model", model);
    ModuleOf(impl->net)->load(model);
    ModuleOf(impl->net)->to(impl->device);
    ModuleOf(impl->net)->eval();
  } catch (const c10::Error& e) {
    return DataLossError("cannot read model package " + path + ": " + e.what_without_backtrace());
  }
  return std::unique_ptr<Model>(new Model(std::move(impl)));
}

const ModelConfig& Model::config() const { return impl_->config; }
const Json& Model::metadata() const { return impl_->metadata; }

StatusOr<InferenceResult> Model::Predict(const Volume& input, const SlabRange& slab,
                                         int64_t total_depth, const PredictHooks& hooks) const {
  const ModelConfig& c = impl_->config;
  const VolumeShape& s = input.shape();
  if (s.c != c.in_channels) {
    return InvalidArgumentError("the volume has " + std::to_string(s.c) + " channels, the model expects " +
                                std::to_string(c.in_channels));
  }
  if (s.z != slab.read_end() - slab.read_begin() || slab.read_begin() < 0 || slab.read_end() > total_depth) {
    return InvalidArgumentError("the input's " + std::to_string(s.z) + " slices do not match slab [" +
                                std::to_string(slab.read_begin()) + ", " + std::to_string(slab.read_end()) + ")");
  }
  const int64_t need = c.InferenceHalo();
  if (slab.halo_before < std::min(need, slab.z_begin) ||
      slab.halo_after < std::min(need, total_depth - slab.z_end)) {
    return InvalidArgumentError("this model needs a halo of " + std::to_string(need) + " slices");
  }
  if (IsThreeD(c.architecture) && total_depth < c.patch_z) {
    return InvalidArgumentError("the volume has fewer slices (" + std::to_string(total_depth) +
                                ") than the 3D model's patch (" + std::to_string(c.patch_z) + ")");
  }
  const int64_t multiple = c.architecture == "dilated2d" ? 1 : int64_t{1} << c.depth;
  if (s.y < multiple || s.x < multiple) {
    return InvalidArgumentError("the image is smaller than the model's smallest tile");
  }
  InferenceResult result;
  try {
    torch::Tensor in = NormalizedTensor(input, c.norm).to(impl_->device);
    PredictOptions po;
    // Test-time augmentation, cheap next to training: the four in-plane flips (the
    // symmetries every model trains with); all eight square symmetries for a denoiser
    // trained with 90-degree rotations (+0.01 to +0.05 dB in five runs of bench/denoise; a
    // segmenter gained 0.001 Dice, not worth twice the time).
    po.tta_views = c.task == Task::kDenoise && (c.augment == "rot90" || c.augment == "full") ? 8 : 4;
    if (hooks.should_stop || hooks.on_progress) {
      po.on_tile = [&hooks](int64_t done, int64_t total) {
        if (hooks.on_progress) hooks.on_progress(static_cast<double>(done) / static_cast<double>(total));
        return !(hooks.should_stop && hooks.should_stop());
      };
    }
    torch::Tensor out = PredictSlices(impl_->net, c, in, slab.read_begin(), slab.z_begin, slab.z_end,
                                      total_depth, po);
    if (!out.defined()) return CancelledError("inference stopped");
    out = out.to(torch::kCPU);
    const VolumeShape out_shape{slab.depth(), s.y, s.x, 1};
    if (c.task == Task::kSegment) {
      IDLEGRID_ASSIGN_OR_RETURN(result.labels, Volume::CreateUninitialized(out_shape, DType::kUInt8));
      torch::Tensor labels = (out.argmax(1) + 1).to(torch::kUInt8).contiguous();
      std::memcpy(result.labels.bytes(), labels.data_ptr(), result.labels.size_bytes());
      if (impl_->options.probabilities) {
        VolumeShape ps = out_shape;
        ps.c = c.num_classes;
        IDLEGRID_ASSIGN_OR_RETURN(result.probabilities, Volume::CreateUninitialized(ps, DType::kUInt8));
        torch::Tensor q = (out * 255).round().clamp(0, 255).to(torch::kUInt8).permute({0, 2, 3, 1}).contiguous();
        std::memcpy(result.probabilities.bytes(), q.data_ptr(), result.probabilities.size_bytes());
      }
    } else {
      VolumeShape ds = out_shape;
      ds.c = c.in_channels;
      IDLEGRID_ASSIGN_OR_RETURN(result.denoised, Volume::CreateUninitialized(ds, DType::kFloat32));
      torch::Tensor d = (out * c.norm.std + c.norm.mean).permute({0, 2, 3, 1}).contiguous();
      std::memcpy(result.denoised.bytes(), d.data_ptr(), result.denoised.size_bytes());
    }
  } catch (const c10::Error& e) {
    return InternalError(std::string("inference failed: ") + e.what_without_backtrace());
  }
  return result;
}

StatusOr<InferenceResult> Model::PredictVolume(const Volume& volume, const PredictHooks& hooks) const {
  return Predict(volume, SlabRange{0, volume.shape().z, 0, 0}, volume.shape().z, hooks);
}

}  // namespace idlegrid::models
