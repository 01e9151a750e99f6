#include "idlegrid/models/strategy.h"

#include <algorithm>
#include <cmath>

namespace idlegrid::models {
namespace {

constexpr int64_t kMinPatch = 16;
constexpr int64_t kMaxSampledVoxels = 1 << 21;
constexpr double kMaxValidationFraction = 0.2;
// A denoiser trains on an evenly spread sample of slices of at most this many voxels (a
// training unit holds it as float32: 128 MiB), whatever the volume's size.
constexpr int64_t kDenoiseSampleVoxels = int64_t{32} << 20;  // of each class's labelled voxels

int64_t FloorPow2(int64_t v) {
  int64_t p = 1;
  while (p * 2 <= v) p *= 2;
  return p;
}

// Largest multiple of `m` not above v (at least m).
int64_t FloorMultiple(int64_t v, int64_t m) { return std::max(m, v / m * m); }

}  // namespace

std::vector<int64_t> SampleSlices(const VolumeShape& shape, DType dtype, int64_t max_bytes) {
  const int64_t slice = std::max<int64_t>(1, shape.y * shape.x * shape.c * static_cast<int64_t>(DTypeSize(dtype)));
  const int64_t n = std::clamp<int64_t>(max_bytes / slice, 1, std::max<int64_t>(shape.z, 1));
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    // Evenly spread, the first and last slice included (all of them when they fit).
    out.push_back(n == 1 ? shape.z / 2 : i * (shape.z - 1) / (n - 1));
  }
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

FingerprintBuilder::FingerprintBuilder(VolumeShape shape, DType dtype, std::vector<int64_t> sampled)
    : shape_(shape), dtype_(dtype), sampled_(std::move(sampled)), counts_(256, 0) {
  const int64_t slice = shape_.y * shape_.x * shape_.c;
  stride_ = std::max<int64_t>(1, static_cast<int64_t>(sampled_.size()) * slice / kMaxSampledVoxels);
  sample_.reserve(static_cast<size_t>(static_cast<int64_t>(sampled_.size()) * slice / stride_ + 1));
}

Status FingerprintBuilder::AddImage(const Volume& slices, int64_t z_begin) {
  const VolumeShape& s = slices.shape();
  if (s.y != shape_.y || s.x != shape_.x || s.c != shape_.c || slices.dtype() != dtype_) {
    return InvalidArgumentError("image slices " + s.ToString() + " do not match " + shape_.ToString());
  }
  const int64_t per_slice = s.y * s.x * s.c;
  for (int64_t z = 0; z < s.z; ++z) {
    const int64_t g = z_begin + z;
    auto it = std::lower_bound(sampled_.begin(), sampled_.end(), g);
    if (it == sampled_.end() || *it != g) continue;
    // Local element index over the sampled slices, so that sampling every slice picks
    // exactly the elements a strided pass over the whole volume picks.
    const int64_t base = (it - sampled_.begin()) * per_slice;
    const int64_t first = (stride_ - base % stride_) % stride_;
    for (int64_t i = first; i < per_slice; i += stride_) {
      const float v = slices.GetAsFloat(z * per_slice + i);
      if (!std::isfinite(v)) return NotFinite(g * per_slice + i);
      sample_.push_back(v);
    }
    AddNoiseSample(slices, z, first);
    if (dtype_ == DType::kFloat32) {  // the sample may have skipped some
      const float* d = slices.data<float>() + z * per_slice;
      for (int64_t i = 0; i < per_slice; ++i) {
        if (!std::isfinite(d[i])) return NotFinite(g * per_slice + i);
      }
    }
  }
  return Status::Ok();
}

// Immerkaer's noise operator (the difference of two Laplacians, L2 norm 6) at the pixels the
// intensity sample picks in the slice's interior, first channel: robust to edges through
// the median that Finish takes.
void FingerprintBuilder::AddNoiseSample(const Volume& slices, int64_t z, int64_t first) {
  const VolumeShape& s = slices.shape();
  const int64_t c = s.c, per_slice = s.y * s.x * c;
  auto at = [&](int64_t y, int64_t x) { return static_cast<double>(slices.GetAsFloat(z * per_slice + (y * s.x + x) * c)); };
  for (int64_t i = first; i < per_slice; i += stride_) {
    const int64_t pixel = i / c, y = pixel / s.x, x = pixel % s.x;
    if (i % c != 0 || y < 1 || x < 1 || y + 1 >= s.y || x + 1 >= s.x) continue;
    const double v = at(y - 1, x - 1) - 2 * at(y - 1, x) + at(y - 1, x + 1) - 2 * at(y, x - 1) + 4 * at(y, x) -
                     2 * at(y, x + 1) + at(y + 1, x - 1) - 2 * at(y + 1, x) + at(y + 1, x + 1);
    noise_.push_back(static_cast<float>(std::abs(v)));
  }
}

Status FingerprintBuilder::AddSampledImage(const std::function<StatusOr<Volume>(int64_t, int64_t)>& read,
                                           int64_t max_slices) {
  for (size_t i = 0; i < sampled_.size();) {
    size_t j = i + 1;
    while (j < sampled_.size() && sampled_[j] == sampled_[j - 1] + 1 && static_cast<int64_t>(j - i) < max_slices) ++j;
    IDLEGRID_ASSIGN_OR_RETURN(Volume v, read(sampled_[i], sampled_[j - 1] + 1));
    IDLEGRID_RETURN_IF_ERROR(AddImage(v, sampled_[i]));
    i = j;
  }
  return Status::Ok();
}

Status FingerprintBuilder::NotFinite(int64_t element) {
  return InvalidArgumentError("the image contains NaN or infinite values (first at element " +
                              std::to_string(element) + ")");
}

Status FingerprintBuilder::AddLabels(const Volume& slices, int64_t z_begin) {
  const VolumeShape& ls = slices.shape();
  if (z_begin != label_slices_ || ls.y != shape_.y || ls.x != shape_.x || ls.c != 1 ||
      z_begin + ls.z > shape_.z) {
    VolumeShape whole = ls;
    whole.z = shape_.z;
    return InvalidArgumentError("labels " + whole.ToString() + " do not match the image " + shape_.ToString());
  }
  if (slices.dtype() != DType::kUInt8) {
    return InvalidArgumentError("labels must be 8-bit (0 = unlabelled, 1..K = classes)");
  }
  const int64_t per_slice = ls.y * ls.x;
  const uint8_t* l = slices.data<uint8_t>();
  for (int64_t z = 0; z < ls.z; ++z) {
    bool any = false;
    for (int64_t i = 0; i < per_slice; ++i) {
      const uint8_t v = l[z * per_slice + i];
      ++counts_[v];
      any = any || v != 0;
    }
    if (any) labelled_z_.push_back(z_begin + z);
  }
  label_slices_ += ls.z;
  return Status::Ok();
}

StatusOr<DataFingerprint> FingerprintBuilder::Finish(const Resources& resources, bool with_labels) {
  DataFingerprint fp;
  fp.shape = shape_;
  fp.resources = resources;
  if (shape_.elements() == 0 || sample_.empty()) return InvalidArgumentError("the image is empty");
  if (fp.shape.y < kMinPatch || fp.shape.x < kMinPatch) {
    return InvalidArgumentError("the image (" + std::to_string(fp.shape.y) + "x" +
                                std::to_string(fp.shape.x) + " pixels) is smaller than the " +
                                "smallest patch of " + std::to_string(kMinPatch) + "x" +
                                std::to_string(kMinPatch));
  }
  std::vector<float> sample = sample_;
  std::sort(sample.begin(), sample.end());
  auto pct = [&](double q) {
    return static_cast<double>(sample[static_cast<size_t>(q * static_cast<double>(sample.size() - 1))]);
  };
  fp.p005 = pct(0.005);
  fp.p995 = pct(0.995);
  double sum = 0, sq = 0;
  for (float v : sample) {
    double c = std::clamp<double>(v, fp.p005, fp.p995);
    sum += c;
    sq += c * c;
  }
  fp.mean = sum / static_cast<double>(sample.size());
  fp.std = std::sqrt(std::max(0.0, sq / static_cast<double>(sample.size()) - fp.mean * fp.mean));
  if (!(fp.std > 1e-12)) fp.std = 1.0;  // a constant image: nothing to scale
  if (!noise_.empty()) {  // Gaussian noise of sigma gives |N * I| a median of 0.6745 x 6 sigma
    std::vector<float> n = noise_;
    std::nth_element(n.begin(), n.begin() + static_cast<std::ptrdiff_t>(n.size() / 2), n.end());
    fp.noise_sigma = static_cast<double>(n[n.size() / 2]) / (6 * 0.6745);
  }
  if (!with_labels) return fp;
  if (label_slices_ != shape_.z) {
    return InvalidArgumentError("labels have " + std::to_string(label_slices_) + " slices, the image " +
                                std::to_string(shape_.z));
  }
  int64_t k = 0;
  for (int64_t c = 1; c < 256; ++c) {
    if (counts_[static_cast<size_t>(c)] > 0) k = c;
  }
  if (k == 0) return InvalidArgumentError("there are no labelled pixels: paint at least two classes");
  if (k < 2) return InvalidArgumentError("only class 1 is labelled: paint at least two classes");
  for (int64_t c = 1; c <= k; ++c) {
    if (counts_[static_cast<size_t>(c)] == 0) {
      return InvalidArgumentError("class " + std::to_string(c) + " has no labelled pixels " +
                                  "(classes must be numbered 1.." + std::to_string(k) + ")");
    }
    fp.labelled_per_class.push_back(counts_[static_cast<size_t>(c)]);
    fp.labelled_total += counts_[static_cast<size_t>(c)];
  }
  fp.num_classes = k;
  fp.labelled_slices = static_cast<int64_t>(labelled_z_.size());
  fp.labelled_z = labelled_z_;
  return fp;
}

StatusOr<DataFingerprint> ComputeFingerprint(const Volume& image, const Volume* labels,
                                             const Resources& resources) {
  if (image.empty()) return InvalidArgumentError("the image is empty");
  std::vector<int64_t> all(static_cast<size_t>(image.shape().z));
  for (int64_t z = 0; z < image.shape().z; ++z) all[static_cast<size_t>(z)] = z;
  FingerprintBuilder b(image.shape(), image.dtype(), std::move(all));
  IDLEGRID_RETURN_IF_ERROR(b.AddImage(image, 0));
  if (labels != nullptr) {
    const VolumeShape& ls = labels->shape();
    if (ls.z != image.shape().z || ls.y != image.shape().y || ls.x != image.shape().x || ls.c != 1) {
      return InvalidArgumentError("labels " + ls.ToString() + " do not match the image " +
                                  image.shape().ToString());
    }
    IDLEGRID_RETURN_IF_ERROR(b.AddLabels(*labels, 0));
  }
  return b.Finish(resources, labels != nullptr);
}

SliceRegion TrainingRegion(const ModelConfig& config, const DataFingerprint& fp) {
  const int64_t depth = fp.shape.z, frames = std::max<int64_t>(fp.frames, 1);
  if (config.task == Task::kSegment) {
    return SliceRegion::Around(fp.labelled_z, config.InferenceHalo(), depth, frames);
  }
  // Denoising learns from any slice: an evenly spread sample of whole slices, bounded.
  const int64_t plane = std::max<int64_t>(1, fp.shape.y * fp.shape.x * fp.shape.c);
  const int64_t n = std::clamp<int64_t>(kDenoiseSampleVoxels / plane, 1, depth);
  if (IsThreeD(config.architecture)) {  // a 3D patch needs consecutive slices of one time point
    const int64_t f = fp.FrameDepth(), first = frames / 2 * f;
    const int64_t m = std::min(f, std::max(n, config.patch_z));
    SliceRegion r = SliceRegion::Range(depth, first + (f - m) / 2, first + (f - m) / 2 + m);
    r.frames = frames;
    return r;
  }
  std::vector<int64_t> slices;
  for (int64_t i = 0; i < n; ++i) slices.push_back(n == 1 ? depth / 2 : i * (depth - 1) / (n - 1));
  return SliceRegion::Around(slices, 0, depth, frames);
}

// The shared part of every configuration. Rules (numbers from bench/segment_textures, 2
// threads, one CPU minute per candidate, unless said otherwise):
//  * normalisation: clip to the 0.5/99.5 percentiles, then z-score (nnU-Net's CT scheme;
//    robust to the hot pixels and dark borders of materials images);
//  * in-plane patch: the largest power of two that fits the image, capped at 64 px on CPU
//    and 256 px on GPU. On CPU many small patches beat few large ones: with sparse
//    scribbles each patch contributes the labelled pixels near its centre, and 16 patches
//    of 64 px reached 0.92 Dice where 4 of 128 px reached 0.85 in the same minute;
//    steps stay well under a second, so a node checkpoints within 2 s;
//  * depth: pool until the bottom feature map is 8 px, at most 4 levels;
//  * width: 8 filters at the top level on CPU, 32 on GPU. On CPU the budget is steps, and
//    8 filters step 1.7x faster than 16 (54 vs 90 ms for 16 patches of 64 px; 59 vs 141
//    before networks.cc's faster layers): at 50k px 850 steps reached 0.983 where 250 steps
//    of 16 filters reached 0.975 (1000 of them, in 3 minutes, 0.986); at 5k px in one
//    minute, 600 steps of 8 filters 0.950, 400-500 of 16 filters 0.930-0.938;
//  * batch: about 64k px per step on CPU and 1M px on GPU, at least 2;
//  * loss: class-weighted cross-entropy on the labelled pixels alone. A Dice term over
//    scribbles measures overlap on a few strokes per batch and cost 0.2-0.3 points
//    (0.983 vs 0.985/0.988 at 50k scribbles on two seeds);
//  * augmentation: flips always; 90-degree rotations only while labels are few (under
//    20k px): they regularise 5k-pixel scribbles (0.931 vs 0.923) but spend a small
//    network's capacity on orientations that never occur once the labels show the
//    structure (0.980 vs 0.985 at 50k: brick has one orientation). The model is applied to
//    the volume it was trained on, so intensity changes and affine resampling (which blurs
//    texture) only hurt here (0.968 vs 0.978 at 50k); "full" stays for configurations
//    meant to generalise to other volumes;
//  * optimiser: Adam, lr 6e-3 (3e-3 gave 0.981, 1e-2 0.983, 6e-3 0.983 with 8 filters), weight
//    decay 3e-5, with a short warm-up and polynomial decay over the whole chain (trainer.cc);
//  * budget: 50 steps per epoch (one validation pass each) and 400 + labelled/100 steps
//    in all, at least 600 and at most 3000 (5k painted px -> 600 steps, 50k -> 900, 1M ->
//    3000), doubled on GPU. Few labels need steps too: at 5k px, 600 steps reached
//    0.948/0.980 Dice (two seeds) where 450 reached 0.937/0.979; more did not help once
//    steps got faster (900: 0.943 on the first seed, 600: 0.950);
//  * class weights: inverse square root of each class's share of the labels, mean 1;
//  * validation: whole strokes holding about 1,700 px of the least painted class, kept
//    between 5% and 20% of each class (the trainer holds out the same share of every
//    class): 5k px in three balanced classes -> 20%, 50k -> 10%, 1M -> 5%. Held-out strokes
//    teach the network nothing. At 50k, holding out 10% instead of 20% raised the best
//    candidate from 0.985/0.985/0.988 to 0.990/0.987/0.986 on three mosaics, and single
//    candidates by 0.1-1 points (unet2d-shallow 0.982 -> 0.990 and 0.985 -> 0.986, unet2d
//    0.980 -> 0.990 and 0.973 -> 0.981). At 5k it made no difference (0.950/0.977 with 20%,
//    0.950/0.973 with 10%), and 20% keeps a class's score from resting on one stroke;
//  * refit, while labels are few (validation at its 20% cap: the least painted class under
//    8,500 px): the held-out strokes train the second half of the chain (refit_fraction
//    0.5), which reports no validation; the score of the first half, a finished training
//    of its own with its own learning-rate schedule, stands (trainer.cc). Few labels are
//    too precious to leave out: at 5k px (mosaic 1, unet2d, trainer seeds 0-7) held out to
//    the end gave 0.938 mean Dice (0.913-0.962), the refit 0.952 (0.936-0.962), no
//    validation at all 0.951; and with the first half's validation the automatic pick
//    found the best of the four candidates on five mosaics of five (before: three). At
//    50k px the refit's shorter schedules cost more than a tenth of the labels gives:
//    0.988 vs 0.990 (seeds 0-3), so there it stays off.
static ModelConfig BaseConfig(const DataFingerprint& fp) {
  ModelConfig c;
  c.in_channels = fp.shape.c;
  c.num_classes = std::max<int64_t>(2, fp.num_classes);
  c.norm = Normalization{fp.p005, fp.p995, fp.mean, fp.std};
  const bool gpu = fp.resources.gpu;
  int64_t patch = std::min<int64_t>(FloorPow2(std::min(fp.shape.y, fp.shape.x)), gpu ? 256 : 64);
  c.depth = std::clamp<int64_t>(static_cast<int64_t>(std::log2(static_cast<double>(patch) / 8)), 1, 4);
  c.patch_y = c.patch_x = patch;
  c.base_filters = gpu ? 32 : 8;
  const int64_t px_per_batch = gpu ? (1 << 20) : (1 << 16);
  c.batch_size = std::clamp<int64_t>(px_per_batch / (patch * patch), 2, 32);
  c.learning_rate = 6e-3;
  c.weight_decay = 3e-5;
  c.dice_weight = 0;
  int64_t least = 0;  // pixels of the least painted class
  for (int64_t n : fp.labelled_per_class) least = least == 0 ? n : std::min(least, n);
  c.validation_fraction =
      std::clamp(1700.0 / static_cast<double>(std::max<int64_t>(1, least)), 0.05, kMaxValidationFraction);
  c.refit_fraction = c.validation_fraction >= kMaxValidationFraction ? 0.5 : 0;
  c.augment = fp.labelled_total < 20000 ? "rot90" : "flips";
  c.steps_per_epoch = 50;
  int64_t steps = std::clamp<int64_t>(400 + fp.labelled_total / 100, 600, 3000) * (gpu ? 2 : 1);
  c.epochs = std::max<int64_t>(1, steps / c.steps_per_epoch);
  if (fp.num_classes > 0) {
    double total = static_cast<double>(fp.labelled_total);
    double sum = 0;
    for (int64_t n : fp.labelled_per_class) {
      double w = std::sqrt(total / (static_cast<double>(fp.num_classes) * static_cast<double>(n)));
      c.class_weights.push_back(w);
      sum += w;
    }
    for (double& w : c.class_weights) w *= static_cast<double>(c.class_weights.size()) / sum;
    for (int64_t k = 1; k <= fp.num_classes; ++k) c.class_names.push_back("class " + std::to_string(k));
  }
  return c;
}

std::vector<ModelConfig> PlanCandidates(const DataFingerprint& fp) {
  const ModelConfig base = BaseConfig(fp);
  std::vector<ModelConfig> out;

  ModelConfig u2 = base;
  u2.architecture = "unet2d";
  u2.name = "unet2d";
  out.push_back(u2);

  // 2.5D: two neighbours on each side when the stack is deep enough.
  const int64_t depth = fp.FrameDepth();  // one time point's slices
  if (depth >= 3) {
    ModelConfig u25 = base;
    u25.architecture = "unet25d";
    u25.context_slices = depth >= 5 ? 2 : 1;
    u25.name = "unet25d-k" + std::to_string(u25.context_slices);
    out.push_back(u25);
  }

  // 3D: a patch of 16 slices (8 for thin stacks) with at most 3 levels, smaller in-plane so
  // the voxel count per step stays close to the 2D candidates'. Only once labels lie on
  // more than one slice: with all of them on one slice (the wizard's first round) nothing
  // teaches a 3D net how its classes continue across slices, and validation, on that same
  // slice, cannot see it. On the demo sample (48x160x160, 18.6k px on one slice; sample
  // seeds 1-3, each candidate trained to the end) the 3D U-Net validated best on two of
  // them and segmented the volume worst on all three, mostly by growing the inclusions
  // (12.9k / 12.7k / 12.8k voxels predicted for 8.8k / 9.5k / 8.4k true; dilated2d 10.5k /
  // 10.7k / 11.4k), even on the painted slice: held-out strokes, drawn inside the phases,
  // miss the boundaries. Validation / whole-volume mean Dice, seeds 1 / 2 / 3:
  //   unet3d     0.991 / 0.905   0.990 / 0.918   0.996 / 0.906
  //   unet2d     0.953 / 0.937   0.994 / 0.942   0.771 / 0.914
  //   unet25d    0.970 / 0.948   0.991 / 0.956   0.925 / 0.924
  //   dilated2d  0.985 / 0.941   0.991 / 0.948   0.986 / 0.926
  // The automatic pick chose the 3D U-Net on seeds 1 and 3; without it, it picks 0.941 /
  // 0.942 / 0.926. The 3D U-Net is also the slowest to train and to apply (scripts/demo:
  // 326 s with it, 201 s without). With labels on two or more slices it is planned as
  // before (unmeasured there: the bundled sample paints one slice).
  // Labels on the same slice of two time points teach nothing about depth: count the
  // slices of a time point that hold labels.
  int64_t labelled_depths = fp.labelled_slices;
  if (fp.frames > 1) {
    std::vector<int64_t> in_frame;
    for (int64_t z : fp.labelled_z) in_frame.push_back(z % depth);
    std::sort(in_frame.begin(), in_frame.end());
    labelled_depths = std::unique(in_frame.begin(), in_frame.end()) - in_frame.begin();
  }
  if (depth >= 8 && labelled_depths >= 2) {
    ModelConfig u3 = base;
    u3.architecture = "unet3d";
    u3.depth = std::min<int64_t>(3, base.depth);
    const int64_t m = int64_t{1} << u3.depth;
    u3.patch_z = FloorMultiple(std::min<int64_t>(16, depth), m);
    u3.patch_y = u3.patch_x = FloorMultiple(std::min<int64_t>(base.patch_y, fp.resources.gpu ? 128 : 64), m);
    u3.batch_size = fp.resources.gpu ? 4 : 2;
    u3.name = "unet3d";
    if (u3.patch_z <= depth) out.push_back(u3);
  }

  ModelConfig dil = base;
  dil.architecture = "dilated2d";
  // Full resolution throughout, 12 filters: a CPU step costs about 2.2x an 8-filter U-Net's
  // (oneDNN's backward pass of a dilated convolution is slow), so it trains fewer steps.
  dil.base_filters = fp.resources.gpu ? 48 : 12;
  dil.depth = 3;  // 6 residual blocks, dilations 1 2 4 4 2 1
  dil.name = "dilated2d";
  out.push_back(dil);

  // Thin stacks, or labels on one slice: substitute 2D U-Nets of another scale at the same
  // cost per step, so there are always four candidates: one seeing twice the context
  // (larger, fewer patches, one more level), one shallower (finer, less context).
  if (out.size() < 4 && base.patch_y * 2 <= std::min(fp.shape.y, fp.shape.x)) {
    ModelConfig context = base;
    context.patch_y = context.patch_x = base.patch_y * 2;
    context.batch_size = std::max<int64_t>(2, base.batch_size / 4);
    context.depth = std::min<int64_t>(4, base.depth + 1);
    context.name = "unet2d-context";
    out.push_back(context);
  }
  if (out.size() < 4) {
    ModelConfig shallow = base;
    shallow.depth = std::max<int64_t>(1, base.depth - 1);
    shallow.name = "unet2d-shallow";
    out.push_back(shallow);
  }
  if (out.size() < 4) {
    ModelConfig wide = base;
    wide.base_filters = base.base_filters * 2;
    wide.name = "unet2d-wide";
    out.push_back(wide);
  }
  return out;
}

// Denoising: a 2D U-Net trained with Neighbor2Neighbor (every pixel contributes to the loss,
// unlike Noise2Void's masked few percent), with the same normalisation and patch rules.
// Rules measured on bench/denoise (camera, Gaussian sigma 25, 2 threads; PSNR in dB):
//  * width: 16 filters on CPU, 48 on GPU. Quality plateaus after about a thousand steps
//    (8 filters: 28.5 after 1500 steps, 28.8 after 2800 and after 5800), so on CPU the
//    width that reaches the plateau first wins: in 150 s, 32 filters took 350 steps and
//    reached 28.4, 16 filters 1200 steps and 28.7, 48 filters 170 steps and 28.3;
//  * augmentation: flips and 90-degree rotations, nothing that resamples. A small affine
//    change interpolates neighbouring pixels, so their noise is no longer independent and
//    each becomes a partly predictable target for the other (rot90 29.1 vs full 28.8);
//  * consistency weight gamma 1 (0.25: 29.07, 0.5: 28.94, 1: 29.12, 2: 28.78 with affine
//    changes, 4: 27.65); the original paper ramps it from 0 to 2, averaging 1;
//  * no batch norm: it trains on half-resolution sub-images and infers at full resolution,
//    and the running statistics do not carry over (28.7 without vs 27.8 with it);
//  * lr 3e-3, 25 steps per epoch, one step per 50 px of the volume, at least 3000 and at
//    most 8000 (doubled on GPU): the camera image (512x512) keeps gaining with steps
//    (2,300 steps: 29.17 dB, 3,800: 29.27, 8,300: 29.51), and on 2 CPU threads a step
//    takes about 32 ms, so 512x512 gets 5,200 steps in under 3 minutes. Inference averages all eight
//    symmetries of the square, as rotation-trained denoisers do in model.cc (the
//    transposes add 0.01-0.05 dB to the four flips; predicting the four sub-images and
//    interleaving them loses 0.9 dB: the network learned a neighbour's value, half a pixel
//    away).
ModelConfig PlanDenoiser(const DataFingerprint& fp) {
  ModelConfig c = BaseConfig(fp);
  c.task = Task::kDenoise;
  c.num_classes = 0;
  c.class_weights.clear();
  c.class_names.clear();
  c.architecture = "unet2d";
  c.base_filters = fp.resources.gpu ? 48 : 16;
  c.learning_rate = 3e-3;
  c.steps_per_epoch = 25;
  c.augment = "rot90";
  c.n2n_gamma = 1.0;
  c.norm_layer = "none";
  c.name = "denoise-unet2d";
  // Self-supervised targets are plentiful: the budget follows the image size instead.
  const int64_t steps = std::clamp<int64_t>(fp.shape.voxels() / 50, 3000, 8000) * (fp.resources.gpu ? 2 : 1);
  c.epochs = steps / c.steps_per_epoch;
  c.validation_fraction = 0;
  c.refit_fraction = 0;  // nothing held out, nothing to refit
  return c;
}

}  // namespace idlegrid::models
