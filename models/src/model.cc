#include "idlegrid/models/model.h"

#include <torch/torch.h>

#include <cstring>
#include <map>

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

namespace {

// Why a streamed prediction stopped inside a callback of PredictTiles (a read that failed).
struct StreamError {
  Status status;
};

// The input slices the network's window needs, normalised once each: slices below the
// window are dropped as it moves forward.
class NormalizedWindow {
 public:
  NormalizedWindow(SliceReader read, const Normalization& norm, torch::Device device, int64_t window)
      : read_(std::move(read)), norm_(norm), device_(device), window_(window) {}

  torch::Tensor Get(int64_t z) {
    auto it = slices_.find(z);
    if (it != slices_.end()) return it->second;
    slices_.erase(slices_.begin(), slices_.lower_bound(z - window_));
    StatusOr<Volume> v = read_(z);
    if (!v.ok()) throw StreamError{v.status()};
    return slices_[z] = NormalizedTensor(*v, norm_)[0].to(device_);
  }

 private:
  SliceReader read_;
  const Normalization& norm_;
  torch::Device device_;
  int64_t window_;
  std::map<int64_t, torch::Tensor> slices_;
};

// Output slices from the network's [n, K, Y, X] (class probabilities or the normalised
// denoised image).
StatusOr<InferenceResult> ToResult(const ModelConfig& c, const torch::Tensor& out, bool probabilities) {
  InferenceResult result;
  const VolumeShape shape{out.size(0), out.size(2), out.size(3), 1};
  if (c.task == Task::kSegment) {
    IDLEGRID_ASSIGN_OR_RETURN(result.labels, Volume::CreateUninitialized(shape, DType::kUInt8));
    torch::Tensor labels = (out.argmax(1) + 1).to(torch::kUInt8).contiguous();
    std::memcpy(result.labels.bytes(), labels.data_ptr(), result.labels.size_bytes());
    if (probabilities) {
      VolumeShape ps = shape;
      ps.c = c.num_classes;
      IDLEGRID_ASSIGN_OR_RETURN(result.probabilities, Volume::CreateUninitialized(ps, DType::kUInt8));
      torch::Tensor q = (out * 255).round().clamp(0, 255).to(torch::kUInt8).permute({0, 2, 3, 1}).contiguous();
      std::memcpy(result.probabilities.bytes(), q.data_ptr(), result.probabilities.size_bytes());
    }
  } else {
    VolumeShape ds = shape;
    ds.c = c.in_channels;
    IDLEGRID_ASSIGN_OR_RETURN(result.denoised, Volume::CreateUninitialized(ds, DType::kFloat32));
    torch::Tensor d = (out * c.norm.std + c.norm.mean).permute({0, 2, 3, 1}).contiguous();
    std::memcpy(result.denoised.bytes(), d.data_ptr(), result.denoised.size_bytes());
  }
  return result;
}

// Copies `part` into `whole` at slice `offset`, creating `whole` (`depth` slices, else the
// part's shape) on the first part.
Status Place(const Volume& part, int64_t offset, int64_t depth, Volume& whole) {
  if (part.empty()) return Status::Ok();
  if (whole.empty()) {
    VolumeShape shape = part.shape();
    shape.z = depth;
    IDLEGRID_ASSIGN_OR_RETURN(whole, Volume::CreateUninitialized(shape, part.dtype()));
  }
  std::memcpy(whole.slice_bytes_at(offset), part.bytes(), part.size_bytes());
  return Status::Ok();
}

}  // namespace

Status Model::PredictStreamed(const VolumeShape& plane, const SlabRange& slab, int64_t total_depth,
                              const SliceReader& read, const SliceWriter& write, const PredictHooks& hooks) const {
  const ModelConfig& c = impl_->config;
  if (plane.c != c.in_channels) {
    return InvalidArgumentError("the volume has " + std::to_string(plane.c) + " channels, the model expects " +
                                std::to_string(c.in_channels));
  }
  if (slab.read_begin() < 0 || slab.read_end() > total_depth || slab.z_begin >= slab.z_end) {
    return InvalidArgumentError("slab [" + std::to_string(slab.read_begin()) + ", " + std::to_string(slab.read_end()) +
                                ") does not fit a volume of " + std::to_string(total_depth) + " slices");
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
  if (plane.y < multiple || plane.x < multiple) {
    return InvalidArgumentError("the image is smaller than the model's smallest tile");
  }
  PredictOptions po;
  // Test-time augmentation, cheap next to training: the four in-plane flips (the symmetries
  // every model trains with); all eight square symmetries for a denoiser trained with
  // 90-degree rotations (+0.01 to +0.05 dB in five runs of bench/denoise; a segmenter gained
  // 0.001 Dice, not worth twice the time).
  po.tta_views = c.task == Task::kDenoise && (c.augment == "rot90" || c.augment == "full") ? 8 : 4;
  if (hooks.should_stop || hooks.on_progress) {
    po.on_tile = [&hooks](int64_t done, int64_t total) {
      if (hooks.on_progress) hooks.on_progress(static_cast<double>(done) / static_cast<double>(total));
      return !(hooks.should_stop && hooks.should_stop());
    };
  }
  const int64_t window = IsThreeD(c.architecture) ? c.patch_z
                         : c.architecture == "unet25d" ? 2 * c.context_slices + 1 : 1;
  auto checked_read = [&](int64_t z) -> StatusOr<Volume> {
    if (z < slab.read_begin() || z >= slab.read_end()) {
      return InternalError("slice " + std::to_string(z) + " is outside the slab's input");
    }
    IDLEGRID_ASSIGN_OR_RETURN(Volume v, read(z));
    const VolumeShape& s = v.shape();
    if (s.z != 1 || s.y != plane.y || s.x != plane.x || s.c != plane.c) {
      return DataLossError("input slice " + std::to_string(z) + " is " + s.ToString() + ", expected " +
                           VolumeShape{1, plane.y, plane.x, plane.c}.ToString());
    }
    return v;
  };
  NormalizedWindow input(checked_read, c.norm, impl_->device, window);
  Status written;
  SliceStream stream;
  stream.input = [&](int64_t z) { return input.Get(z); };
  stream.output = [&](int64_t z, const torch::Tensor& out) {
    StatusOr<InferenceResult> r = ToResult(c, out, impl_->options.probabilities);
    written = r.ok() ? write(z, *r) : r.status();
    return written.ok();
  };
  try {
    if (!PredictTiles(impl_->net, c, plane.y, plane.x, slab.z_begin, slab.z_end, total_depth, po, stream)) {
      return written.ok() ? CancelledError("inference stopped") : written;
    }
  } catch (const StreamError& e) {
    return e.status;
  } catch (const c10::Error& e) {
    return InternalError(std::string("inference failed: ") + e.what_without_backtrace());
  }
  return Status::Ok();
}

StatusOr<InferenceResult> Model::Predict(const Volume& input, const SlabRange& slab,
                                         int64_t total_depth, const PredictHooks& hooks) const {
  const VolumeShape& s = input.shape();
  if (s.z != slab.read_end() - slab.read_begin() || slab.read_begin() < 0 || slab.read_end() > total_depth) {
    return InvalidArgumentError("the input's " + std::to_string(s.z) + " slices do not match slab [" +
                                std::to_string(slab.read_begin()) + ", " + std::to_string(slab.read_end()) + ")");
  }
  InferenceResult result;
  auto read = [&](int64_t z) -> StatusOr<Volume> {
    IDLEGRID_ASSIGN_OR_RETURN(Volume v, Volume::CreateUninitialized({1, s.y, s.x, s.c}, input.dtype()));
    std::memcpy(v.bytes(), input.slice_bytes_at(z - slab.read_begin()), v.size_bytes());
    return v;
  };
  auto write = [&](int64_t first, const InferenceResult& part) {
    const int64_t at = first - slab.z_begin;
    for (auto [from, to] : {std::pair{&part.labels, &result.labels}, std::pair{&part.probabilities, &result.probabilities},
                            std::pair{&part.denoised, &result.denoised}}) {
      IDLEGRID_RETURN_IF_ERROR(Place(*from, at, slab.depth(), *to));
    }
    return Status::Ok();
  };
  IDLEGRID_RETURN_IF_ERROR(PredictStreamed(VolumeShape{1, s.y, s.x, s.c}, slab, total_depth, read, write, hooks));
  return result;
}

StatusOr<InferenceResult> Model::PredictVolume(const Volume& volume, const PredictHooks& hooks) const {
  return Predict(volume, SlabRange{0, volume.shape().z, 0, 0}, volume.shape().z, hooks);
}

}  // namespace idlegrid::models
