#include "idlegrid/models/trainer.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <sstream>
#include <unordered_map>

#include <torch/torch.h>

#include "archive_util.h"
#include "idlegrid/models/config_json.h"
#include "idlegrid/models/strategy.h"
#include "networks.h"
#include "tensors.h"
#include "training_ops.h"

namespace idlegrid::models {
namespace {

constexpr const char* kCheckpointFormat = "idlegrid-checkpoint-1";
constexpr const char* kModelFormat = "idlegrid-model-1";
constexpr double kGradClip = 12.0;
constexpr double kRefitRate = 0.5;  // peak learning rate of a refit, of the configured one

// Fisher-Yates with our own index draws: the order is the same with every standard library.
template <typename T>
void Shuffle(std::vector<T>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng() % i]);
}

// A crop must hold what training reads around each labelled slice: the slices a 2.5D or 3D
// patch and a validation tile reach (ModelConfig::InferenceHalo), clipped to the volume.
Status CheckRegion(const ModelConfig& config, const SliceRegion& region, const Volume& image,
                   const Volume* labels) {
  IDLEGRID_RETURN_IF_ERROR(region.Validate("the training region"));
  if (region.slices() != image.shape().z) {
    return InvalidArgumentError("the image has " + std::to_string(image.shape().z) +
                                " slices, its region " + std::to_string(region.slices()));
  }
  if (region.whole() || labels == nullptr || labels->shape().z != image.shape().z ||
      labels->dtype() != DType::kUInt8) {
    return Status::Ok();  // shape and type mismatches are reported by ComputeFingerprint
  }
  const int64_t halo = config.InferenceHalo();
  const size_t plane = static_cast<size_t>(labels->shape().y * labels->shape().x);
  for (int64_t z = 0; z < labels->shape().z; ++z) {
    const uint8_t* l = labels->slice_bytes_at(z);
    if (std::all_of(l, l + plane, [](uint8_t v) { return v == 0; })) continue;
    const int64_t g = region.Global(z), lo = region.FrameStart(g);
    for (int64_t dz = -halo; dz <= halo; ++dz) {  // clamped to its time point, as inference is
      const int64_t need = std::clamp<int64_t>(g + dz, lo, lo + region.FrameDepth() - 1);
      if (region.Local(need) < 0) {
        return InvalidArgumentError("the training region lacks slice " + std::to_string(need) +
                                    ", which labelled slice " + std::to_string(g) + " needs (" +
                                    config.architecture + " reads " + std::to_string(halo) +
                                    " slices on each side)");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

struct Trainer::Impl {
  ModelConfig config;
  TrainerOptions options;
  torch::Device device{torch::kCPU};
  torch::Tensor image;         // [Z, C, Y, X] normalised, CPU
  torch::Tensor train_labels;  // [Z, Y, X] int64, validation strokes removed
  torch::Tensor val_labels;    // [Z, Y, X] int64, only the held-out strokes
  std::vector<std::vector<int64_t>> train_index;  // per class: flat voxel indices
  std::vector<std::vector<int64_t>> val_index;    // per class: the held-out ones
  std::vector<int64_t> val_slices;
  int64_t train_count = 0, val_count = 0;
  torch::Tensor class_weights;
  torch::nn::AnyModule net;
  std::shared_ptr<torch::nn::Module> module;
  std::unique_ptr<torch::optim::Adam> optimizer;
  std::mt19937_64 rng;
  at::Generator gen;
  int64_t epoch = 0, step_in_epoch = 0, global_step = 0;
  double epoch_loss_sum = 0;
  std::vector<EpochMetrics> history;

  // The slices `image` holds (TrainerOptions::region): local index i is global slice
  // global_z[i] of a volume of region.depth. Sampling and validation reason in global
  // slices, so a crop trains exactly as the whole volume would.
  SliceRegion region;
  std::vector<int64_t> global_z;

  int64_t Z() const { return image.size(0); }  // local slices
  // A time series' time points are volumes of their own (SliceRegion::frames): F() slices
  // from FrameStart(g). Context is clamped to the time point as to a volume's ends.
  int64_t F() const { return region.FrameDepth(); }
  int64_t FrameStart(int64_t g) const { return region.FrameStart(g); }
  int64_t Y() const { return image.size(2); }
  int64_t X() const { return image.size(3); }

  // Refit epochs (ModelConfig::refit_fraction) train on the held-out strokes too; there are
  // none when nothing is held out.
  // The local slice `dz` slices from local slice z, clamped to the volume as inference
  // does. A denoiser's sample of slices may lack it: then the nearest held slice.
  int64_t Plane(int64_t z, int64_t dz) const {
    const int64_t g = global_z[static_cast<size_t>(z)], lo = FrameStart(g);
    const int64_t l = region.Local(std::clamp<int64_t>(g + dz, lo, lo + F() - 1));
    return l >= 0 ? l : std::clamp<int64_t>(z + dz, 0, Z() - 1);
  }
  // The run [first, end) of local slices that holds local slice z, within z's time point,
  // and its first global slice.
  struct Run {
    int64_t first, end, global_first;
  };
  Run RunOf(int64_t z) const {
    int64_t first = 0;
    for (const auto& [b, e] : region.runs) {
      if (z < first + (e - b)) {
        const int64_t lo = FrameStart(b + (z - first)), hi = lo + F();
        const int64_t gb = std::max(b, lo), ge = std::min(e, hi);
        return {first + (gb - b), first + (ge - b), gb};
      }
      first += e - b;
    }
    return {0, Z(), 0};
  }
  bool Refits() const { return config.task == Task::kSegment && val_count > 0; }
  bool Refitting() const { return Refits() && epoch >= config.RefitFrom(); }
  Status SplitStrokes(const torch::Tensor& labels);
  double LearningRate() const;
  void SampleBatch(torch::Tensor* batch, torch::Tensor* target);
  // nullopt when `should_stop` said yes between two tiles.
  std::optional<EpochMetrics> Validate(const std::function<bool()>& should_stop);
};

// Splits the labelled voxels into training and validation by whole strokes: connected
// components (26-neighbourhood) of each class, shuffled with the seed, are held out until
// about validation_fraction of the class's voxels are. A class drawn as a single stroke
// gives the last rows (raster order) of that stroke instead, so validation always measures
// pixels the network did not train on, away from the ones it did. Strokes that would
// overshoot the share by half are skipped, so a class painted as one large stroke and a few
// dabs (the demo sample's matrix) holds out the dabs alone: 47-630 px of the 3,333 wanted.
// Topping up from the large stroke's last rows was tried and cost more than it gave: on
// mosaic 3 of bench/segment_textures at 50k px (class 3: 125 px held out of 1,701 wanted)
// the best candidate fell from 0.987 to 0.982, partly because a longer validation pass
// leaves fewer steps in the time budget.
Status Trainer::Impl::SplitStrokes(const torch::Tensor& labels) {
  const int64_t zn = Z(), yn = Y(), xn = X(), k = config.num_classes;
  const int64_t* l = labels.data_ptr<int64_t>();
  std::vector<std::vector<std::vector<int64_t>>> components(static_cast<size_t>(k));
  std::unordered_map<int64_t, bool> seen;
  const int64_t n = zn * yn * xn;
  for (int64_t i = 0; i < n; ++i) {
    if (l[i] == 0 || seen.count(i)) continue;
    const int64_t cls = l[i];
    std::vector<int64_t> comp{i}, stack{i};
    seen[i] = true;
    while (!stack.empty()) {
      int64_t v = stack.back();
      stack.pop_back();
      int64_t z = v / (yn * xn), y = (v / xn) % yn, x = v % xn;
      for (int64_t dz = -1; dz <= 1; ++dz)
        for (int64_t dy = -1; dy <= 1; ++dy)
          for (int64_t dx = -1; dx <= 1; ++dx) {
            int64_t zz = z + dz, yy = y + dy, xx = x + dx;
            if (zz < 0 || yy < 0 || xx < 0 || zz >= zn || yy >= yn || xx >= xn) continue;
            if (dz != 0 && (global_z[static_cast<size_t>(zz)] != global_z[static_cast<size_t>(z)] + dz ||
                            FrameStart(global_z[static_cast<size_t>(zz)]) != FrameStart(global_z[static_cast<size_t>(z)]))) {
              continue;  // not adjacent in the volume, or another time point
            }
            int64_t u = (zz * yn + yy) * xn + xx;
            if (l[u] != cls || seen.count(u)) continue;
            seen[u] = true;
            comp.push_back(u);
            stack.push_back(u);
          }
    }
    std::sort(comp.begin(), comp.end());
    components[static_cast<size_t>(cls - 1)].push_back(std::move(comp));
  }
  train_labels = labels.clone();
  val_labels = torch::zeros_like(labels);
  int64_t* tl = train_labels.data_ptr<int64_t>();
  int64_t* vl = val_labels.data_ptr<int64_t>();
  std::mt19937_64 split_rng(options.seed ^ 0x9e3779b97f4a7c15ull);
  train_index.assign(static_cast<size_t>(k), {});
  val_index.assign(static_cast<size_t>(k), {});
  for (int64_t c = 0; c < k; ++c) {
    auto& comps = components[static_cast<size_t>(c)];
    int64_t total = 0;
    for (const auto& comp : comps) total += static_cast<int64_t>(comp.size());
    const int64_t want = static_cast<int64_t>(std::llround(config.validation_fraction * static_cast<double>(total)));
    std::vector<size_t> order(comps.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    Shuffle(order, split_rng);
    int64_t held = 0;
    std::vector<bool> is_val(comps.size(), false);
    for (size_t i = 0; i + 1 < order.size() && held < want; ++i) {  // keep >= 1 for training
      const auto& comp = comps[order[i]];
      if (held + static_cast<int64_t>(comp.size()) > want + want / 2) continue;
      is_val[order[i]] = true;
      held += static_cast<int64_t>(comp.size());
    }
    auto hold_out = [&](int64_t v) {
      vl[v] = tl[v];
      tl[v] = 0;
      ++val_count;
    };
    for (size_t i = 0; i < comps.size(); ++i) {
      if (is_val[i]) for (int64_t v : comps[i]) hold_out(v);
    }
    if (held == 0 && want > 0) {  // one stroke (or only large ones): its last rows
      size_t largest = 0;
      for (size_t i = 1; i < comps.size(); ++i) {
        if (comps[i].size() > comps[largest].size()) largest = i;
      }
      const auto& comp = comps[largest];
      int64_t take = std::min<int64_t>(want, static_cast<int64_t>(comp.size()) / 2);
      for (int64_t j = static_cast<int64_t>(comp.size()) - take; j < static_cast<int64_t>(comp.size()); ++j) {
        hold_out(comp[static_cast<size_t>(j)]);
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (tl[i] > 0) {
      train_index[static_cast<size_t>(tl[i] - 1)].push_back(i);
      ++train_count;
    }
    if (vl[i] > 0) val_index[static_cast<size_t>(vl[i] - 1)].push_back(i);
  }
  for (int64_t c = 0; c < k; ++c) {
    if (train_index[static_cast<size_t>(c)].empty()) {
      return InvalidArgumentError("class " + std::to_string(c + 1) +
                                  " has too few labelled pixels to train on");
    }
  }
  for (int64_t z = 0; z < zn; ++z) {
    if (val_labels[z].gt(0).any().item<bool>()) val_slices.push_back(z);
  }
  return Status::Ok();
}

// Warm-up over the first 5% of the steps, then polynomial decay (power 0.9) to zero. With a
// refit the chain runs two such schedules: the first, on the training strokes alone, ends
// converged, so its last validation scores a finished model (and equals a chain of
// RefitFrom() epochs without refit); the refit restarts at kRefitRate of the rate, without
// warm-up, on every label. One schedule decaying across the refit reached 0.948 mean Dice at
// 5k px (mosaic 1, unet2d, trainer seeds 0-7), two 0.952, no validation at all 0.951.
double Trainer::Impl::LearningRate() const {
  const int64_t total = config.epochs * config.steps_per_epoch;
  const int64_t refit = Refits() ? config.RefitFrom() * config.steps_per_epoch : total;
  auto decay = [](double t, double n) { return std::pow(std::max(0.0, 1 - t / (n + 1)), 0.9); };
  if (global_step >= refit) {
    return config.learning_rate * kRefitRate * decay(static_cast<double>(global_step - refit), static_cast<double>(total - refit));
  }
  const double n = static_cast<double>(refit), warm = std::max(1.0, n / 20), t = static_cast<double>(global_step);
  if (t < warm) return config.learning_rate * (0.1 + 0.9 * t / warm);
  return config.learning_rate * decay(t - warm, n - warm);
}

void Trainer::Impl::SampleBatch(torch::Tensor* batch, torch::Tensor* target) {
  const bool three_d = IsThreeD(config.architecture);
  const int64_t pz = config.patch_z, py = config.patch_y, px = config.patch_x;
  const int64_t k = config.architecture == "unet25d" ? config.context_slices : 0;
  std::vector<torch::Tensor> images, labels;
  // Where in a patch of size p the chosen voxel lands: anywhere, so that patch borders are
  // supervised too (a 3D net trained only near its patch centre predicts garbage at the
  // first and last slices of a volume, where only a tile's border covers them).
  auto offset = [&](int64_t p) { return static_cast<int64_t>(rng() % static_cast<uint64_t>(p)); };
  const bool refit = Refitting();
  // The labels of a crop: the training strokes, plus the held-out ones in refit epochs.
  auto labels_of = [&](auto crop) { return refit ? crop(train_labels) + crop(val_labels) : crop(train_labels); };
  for (int64_t b = 0; b < config.batch_size; ++b) {
    int64_t z, y0, x0, z0 = 0;
    if (config.task == Task::kSegment) {
      // Class-balanced: a class at random, then one of its training voxels (in refit
      // epochs, one of all its labelled voxels).
      const size_t c = rng() % train_index.size();
      const auto& index = train_index[c];
      int64_t v;
      if (refit) {
        const auto& held = val_index[c];
        const size_t r = rng() % (index.size() + held.size());
        v = r < index.size() ? index[r] : held[r - index.size()];
      } else {
        v = index[rng() % index.size()];
      }
      z = v / (Y() * X());
      y0 = (v / X()) % Y() - offset(py);
      x0 = v % X() - offset(px);
      if (three_d) {  // placed in the whole volume, then found in the region
        const int64_t gz = global_z[static_cast<size_t>(z)], lo = FrameStart(gz);
        const int64_t g = std::clamp<int64_t>(gz - offset(pz), lo, lo + F() - pz);
        z0 = region.Local(g);
      }
    } else {
      z = static_cast<int64_t>(rng() % static_cast<uint64_t>(Z()));
      y0 = static_cast<int64_t>(rng() % static_cast<uint64_t>(Y()));
      x0 = static_cast<int64_t>(rng() % static_cast<uint64_t>(X()));
      if (three_d) z0 = z;
    }
    y0 = std::clamp<int64_t>(y0, 0, Y() - py);
    x0 = std::clamp<int64_t>(x0, 0, X() - px);
    if (config.task != Task::kSegment) z0 = std::clamp<int64_t>(z0, 0, Z() - (three_d ? pz : 1));
    torch::Tensor img, lab;
    if (three_d) {
      img = image.slice(0, z0, z0 + pz).slice(2, y0, y0 + py).slice(3, x0, x0 + px).permute({1, 0, 2, 3});
      if (config.task == Task::kSegment) {
        lab = labels_of([&](const torch::Tensor& l) { return l.slice(0, z0, z0 + pz).slice(1, y0, y0 + py).slice(2, x0, x0 + px); });
      }
    } else {
      std::vector<torch::Tensor> planes;
      for (int64_t dz = -k; dz <= k; ++dz) {
        planes.push_back(image[Plane(z, dz)].slice(1, y0, y0 + py).slice(2, x0, x0 + px));
      }
      img = torch::cat(planes, 0);
      if (config.task == Task::kSegment) {
        lab = labels_of([&](const torch::Tensor& l) { return l[z].slice(0, y0, y0 + py).slice(1, x0, x0 + px); });
      }
    }
    img = img.contiguous().clone();
    if (lab.defined()) lab = lab.contiguous().clone();
    Augment(img, lab, rng, gen, config.augment, /*intensity=*/config.task == Task::kSegment);
    images.push_back(img);
    if (lab.defined()) labels.push_back(lab);
  }
  *batch = torch::stack(images).to(device);
  if (!labels.empty()) *target = torch::stack(labels).to(device);
}

std::optional<EpochMetrics> Trainer::Impl::Validate(const std::function<bool()>& should_stop) {
  EpochMetrics m;
  if (config.task != Task::kSegment || val_count == 0) return m;
  struct TrainModeGuard {  // back to training mode however validation ends
    torch::nn::Module& m;
    ~TrainModeGuard() { m.train(); }
  } guard{*module};
  module->eval();
  const int64_t k = config.num_classes;
  std::vector<double> tp(static_cast<size_t>(k), 0), fp(static_cast<size_t>(k), 0), fn(static_cast<size_t>(k), 0);
  // Local slices [z_begin, z_end) of one run, predicted from that run with the whole
  // volume's tile grid (the same tiles, in the same order, as over the whole volume).
  auto score = [&](int64_t z_begin, int64_t z_end) {
    const Run run = RunOf(z_begin);
    torch::Tensor truth = val_labels.slice(0, z_begin, z_end);
    torch::Tensor mask = truth > 0;
    PredictOptions po;
    po.wanted = mask;  // only the tiles over held-out strokes
    // Validation of a large slice takes many seconds on a CPU: a stop must not wait for it.
    if (should_stop) po.on_tile = [&](int64_t, int64_t) { return !should_stop(); };
    // In the coordinates of the run's time point, a volume of F() slices.
    const int64_t lo = FrameStart(run.global_first);
    const int64_t g = run.global_first + (z_begin - run.first) - lo;
    torch::Tensor probs = PredictSlices(net, config, image.slice(0, run.first, run.end), run.global_first - lo, g,
                                        g + (z_end - z_begin), F(), po);
    if (!probs.defined()) return false;
    torch::Tensor pred = probs.argmax(1) + 1;  // [z, Y, X]
    torch::Tensor p = pred.masked_select(mask), t = truth.masked_select(mask);
    for (int64_t c = 1; c <= k; ++c) {
      torch::Tensor pc = p == c, tc = t == c;
      tp[static_cast<size_t>(c - 1)] += (pc & tc).sum().item<double>();
      fp[static_cast<size_t>(c - 1)] += (pc & ~tc).sum().item<double>();
      fn[static_cast<size_t>(c - 1)] += (~pc & tc).sum().item<double>();
    }
    return true;
  };
  if (IsThreeD(config.architecture)) {
    // One prediction per run that holds held-out strokes (a crop's runs are apart).
    for (size_t i = 0; i < val_slices.size();) {
      const Run run = RunOf(val_slices[i]);
      size_t j = i;
      while (j + 1 < val_slices.size() && val_slices[j + 1] < run.end) ++j;
      if (!score(val_slices[i], val_slices[j] + 1)) return std::nullopt;
      i = j + 1;
    }
  } else {
    for (int64_t z : val_slices) {
      if (!score(z, z + 1)) return std::nullopt;
    }
  }
  double sum = 0;
  int counted = 0;
  for (int64_t c = 0; c < k; ++c) {
    double denom = 2 * tp[static_cast<size_t>(c)] + fp[static_cast<size_t>(c)] + fn[static_cast<size_t>(c)];
    double dice = denom > 0 ? 2 * tp[static_cast<size_t>(c)] / denom : -1;
    double iou_d = tp[static_cast<size_t>(c)] + fp[static_cast<size_t>(c)] + fn[static_cast<size_t>(c)];
    m.dice.push_back(dice);
    m.iou.push_back(iou_d > 0 ? tp[static_cast<size_t>(c)] / iou_d : -1);
    if (dice >= 0) sum += dice, ++counted;
  }
  m.mean_dice = counted ? sum / counted : -1;
  return m;
}

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;

StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const ModelConfig& config, const Volume& image,
                                                   const Volume* labels,
                                                   const TrainerOptions& options) {
  IDLEGRID_RETURN_IF_ERROR(config.Validate());
  if ((config.task == Task::kSegment) != (labels != nullptr)) {
    return InvalidArgumentError(config.task == Task::kSegment ? "segmentation needs labels"
                                                              : "denoising takes no labels");
  }
  if (image.shape().c != config.in_channels) {
    return InvalidArgumentError("the image has " + std::to_string(image.shape().c) +
                                " channels, the model expects " + std::to_string(config.in_channels));
  }
  // Checks labels (shape, classes) and intensities (NaN) the same way the strategy does.
  IDLEGRID_ASSIGN_OR_RETURN(DataFingerprint fp, ComputeFingerprint(image, labels, Resources{}));
  if (labels != nullptr && fp.num_classes > config.num_classes) {
    return InvalidArgumentError("labels use class " + std::to_string(fp.num_classes) +
                                " but the model has " + std::to_string(config.num_classes) + " classes");
  }
  const VolumeShape& s = image.shape();
  const SliceRegion region = options.region.runs.empty() ? SliceRegion::Whole(s.z) : options.region;
  IDLEGRID_RETURN_IF_ERROR(CheckRegion(config, region, image, labels));
  if (config.patch_y > s.y || config.patch_x > s.x ||
      (IsThreeD(config.architecture) && config.patch_z > region.FrameDepth())) {
    return InvalidArgumentError("the image (" + s.ToString() + ") is smaller than a patch (" +
                                std::to_string(config.patch_z) + "x" + std::to_string(config.patch_y) +
                                "x" + std::to_string(config.patch_x) + ")");
  }
  if (config.task == Task::kDenoise && (config.patch_y % (2 << config.depth) != 0 || config.patch_x % (2 << config.depth) != 0)) {
    return InvalidArgumentError("denoising patches must be multiples of " + std::to_string(2 << config.depth));
  }
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  t.config = config;
  t.options = options;
  t.region = region;
  for (int64_t i = 0; i < s.z; ++i) t.global_z.push_back(region.Global(i));
  try {
    t.device = torch::Device(options.device);
    if (t.device.is_cuda() && !torch::cuda::is_available()) {
      return FailedPreconditionError("CUDA is not available on this machine");
    }
    t.image = NormalizedTensor(image, config.norm);
    if (labels != nullptr) {
      t.config.num_classes = std::max(config.num_classes, fp.num_classes);
      IDLEGRID_RETURN_IF_ERROR(t.SplitStrokes(LabelTensor(*labels)));
      if (!config.class_weights.empty()) {
        t.class_weights = torch::tensor(config.class_weights, torch::kFloat32).to(t.device);
      }
    }
    t.rng.seed(options.seed);
    t.gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
    torch::manual_seed(options.seed);  // weight initialisation
    t.net = BuildNetwork(t.config);
    t.module = ModuleOf(t.net);
    t.module->to(t.device);
    t.module->train();
    t.optimizer = std::make_unique<torch::optim::Adam>(
        t.module->parameters(),
        torch::optim::AdamOptions(config.learning_rate).weight_decay(config.weight_decay));
  } catch (const c10::Error& e) {
    return InternalError(std::string("LibTorch: ") + e.what_without_backtrace());
  }
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
}

bool Trainer::EpochStepsDone() const { return impl_->step_in_epoch >= impl_->config.steps_per_epoch; }

StatusOr<StepInfo> Trainer::Step() {
  Impl& t = *impl_;
  if (t.epoch >= t.config.epochs) return FailedPreconditionError("all epochs are done");
  if (EpochStepsDone()) return FailedPreconditionError("the epoch's steps are done: FinishEpoch()");
  try {
    const double lr = t.LearningRate();
    for (auto& group : t.optimizer->param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    }
    torch::Tensor batch, target;
    t.SampleBatch(&batch, &target);
    torch::Tensor loss = t.config.task == Task::kSegment
                             ? SparseSegmentationLoss(t.net.forward(batch), target, t.class_weights, t.config.dice_weight)
                             : Neighbor2NeighborLoss(t.net, batch, t.config.n2n_gamma, t.gen);
    t.optimizer->zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(t.module->parameters(), kGradClip);
    t.optimizer->step();
    StepInfo info;
    info.loss = loss.item<double>();
    t.epoch_loss_sum += info.loss;
    info.epoch = t.epoch;
    info.step_in_epoch = ++t.step_in_epoch;
    info.global_step = ++t.global_step;
    return info;
  } catch (const c10::Error& e) {
    return InternalError(std::string("training step failed: ") + e.what_without_backtrace());
  }
}

StatusOr<EpochMetrics> Trainer::FinishEpoch(const std::function<bool()>& should_stop) {
  Impl& t = *impl_;
  if (!EpochStepsDone()) return FailedPreconditionError("the epoch has steps left");
  EpochMetrics m;
  try {
    if (!t.Refitting()) {
      std::optional<EpochMetrics> v = t.Validate(should_stop);
      // Nothing has changed: a checkpoint now resumes by validating this epoch again.
      if (!v) return CancelledError("validation stopped");
      m = std::move(*v);
    }
  } catch (const c10::Error& e) {
    return InternalError(std::string("validation failed: ") + e.what_without_backtrace());
  }
  m.epoch = t.epoch + 1;
  m.train_loss = t.epoch_loss_sum / static_cast<double>(t.config.steps_per_epoch);
  t.history.push_back(m);
  ++t.epoch;
  t.step_in_epoch = 0;
  t.epoch_loss_sum = 0;
  return m;
}

Status Trainer::RunUntilEpoch(int64_t end_epoch, const Hooks& hooks) {
  end_epoch = std::min(end_epoch, impl_->config.epochs);
  while (impl_->epoch < end_epoch) {
    if (EpochStepsDone()) {
      IDLEGRID_ASSIGN_OR_RETURN(EpochMetrics m, FinishEpoch(hooks.should_stop));
      if (hooks.on_epoch) hooks.on_epoch(m);
      continue;
    }
    if (hooks.should_stop && hooks.should_stop()) return CancelledError("training stopped");
    IDLEGRID_ASSIGN_OR_RETURN(StepInfo info, Step());
    if (hooks.on_step) hooks.on_step(info);
  }
  return Status::Ok();
}

Status Trainer::SaveCheckpoint(const std::string& path) const {
  const Impl& t = *impl_;
  try {
    torch::serialize::OutputArchive a, model, optimizer;
    WriteString(a, "format", kCheckpointFormat);
    WriteString(a, "config", ConfigToJson(t.config).dump());
    t.module->save(model);
    a.write("model", model);
    t.optimizer->save(optimizer);
    a.write("optimizer", optimizer);
    a.write("torch_rng", t.gen.get_state());
    std::ostringstream rng;
    rng << t.rng;
    WriteString(a, "std_rng", rng.str());
    a.write("position", torch::tensor({t.epoch, t.step_in_epoch, t.global_step}, torch::kInt64));
    a.write("epoch_loss_sum", torch::tensor({t.epoch_loss_sum}, torch::kFloat64));
    WriteString(a, "history", HistoryToJson(t.history).dump());
    return SaveArchiveAtomic(a, path);
  } catch (const c10::Error& e) {
    return IoError("cannot write checkpoint " + path + ": " + e.what_without_backtrace());
  }
}

Status Trainer::InitializeFrom(const std::string& path) {
  Impl& t = *impl_;
  if (t.global_step != 0) return FailedPreconditionError("weights can be initialised only before training");
  try {
    torch::serialize::InputArchive a, model;
    a.load_from(path);
    if (ReadString(a, "format") != kModelFormat) return DataLossError(path + " is not an idlegrid model package");
    StatusOr<Json> j = ParseJson(ReadString(a, "config"));
    if (!j.ok()) return DataLossError(path + ": corrupt configuration");
    IDLEGRID_ASSIGN_OR_RETURN(ModelConfig c, ConfigFromJson(*j));
    const ModelConfig& m = t.config;
    if (c.architecture != m.architecture || c.in_channels != m.in_channels || c.OutChannels() != m.OutChannels() ||
        c.base_filters != m.base_filters || c.depth != m.depth || c.context_slices != m.context_slices ||
        c.norm_layer != m.norm_layer || c.task != m.task) {
      return FailedPreconditionError("the model " + path + " (" + c.name + ") has another network shape than " + m.name);
    }
    a.read("model", model);
    t.module->load(model);
  } catch (const c10::Error& e) {
    return DataLossError("cannot read model package " + path + ": " + e.what_without_backtrace());
  }
  return Status::Ok();
}

Status Trainer::LoadCheckpoint(const std::string& path) {
  Impl& t = *impl_;
  try {
    torch::serialize::InputArchive a, model, optimizer;
    a.load_from(path);
    if (ReadString(a, "format") != kCheckpointFormat) {
      return DataLossError(path + " is not an idlegrid checkpoint");
    }
    if (ReadString(a, "config") != ConfigToJson(t.config).dump()) {
      return FailedPreconditionError("checkpoint " + path + " belongs to another model configuration");
    }
    a.read("model", model);
    t.module->load(model);
    a.read("optimizer", optimizer);
    t.optimizer->load(optimizer);
    torch::Tensor rng_state;
    a.read("torch_rng", rng_state);
    t.gen.set_state(rng_state);
    std::istringstream rng(ReadString(a, "std_rng"));
    rng >> t.rng;
    torch::Tensor position, loss_sum;
    a.read("position", position);
    a.read("epoch_loss_sum", loss_sum);
    const int64_t epoch = position[0].item<int64_t>(), step = position[1].item<int64_t>();
    const int64_t global = position[2].item<int64_t>();
    // Checkpoints travel between nodes: a position that cannot come from this
    // configuration would make the unit run forever or with a negative learning rate.
    if (epoch < 0 || epoch > t.config.epochs || step < 0 || step > t.config.steps_per_epoch ||
        global != epoch * t.config.steps_per_epoch + step) {
      return DataLossError("checkpoint " + path + " has an impossible position");
    }
    t.epoch = epoch;
    t.step_in_epoch = step;
    t.global_step = global;
    t.epoch_loss_sum = loss_sum[0].item<double>();
    StatusOr<Json> history = ParseJson(ReadString(a, "history"));
    if (!history.ok()) return DataLossError("checkpoint history is corrupt");
    t.history = HistoryFromJson(*history);
    if (rng.fail()) return DataLossError("checkpoint random state is corrupt");
  } catch (const c10::Error& e) {
    return DataLossError("cannot read checkpoint " + path + ": " + e.what_without_backtrace());
  } catch (const Json::exception& e) {
    return DataLossError("cannot read checkpoint " + path + ": " + e.what());
  }
  return Status::Ok();
}

Status Trainer::ExportModel(const std::string& path, const std::string& metadata_json) const {
  const Impl& t = *impl_;
  StatusOr<Json> meta = ParseJson(metadata_json);
  if (!meta.ok() || !meta->is_object()) return InvalidArgumentError("model metadata must be a JSON object");
  (*meta)["history"] = HistoryToJson(t.history);
  (*meta)["trained_epochs"] = t.epoch;
  (*meta)["train_voxels"] = t.train_count;
  (*meta)["validation_voxels"] = t.val_count;
  try {
    torch::serialize::OutputArchive a, model;
    WriteString(a, "format", kModelFormat);
    WriteString(a, "config", ConfigToJson(t.config).dump());
    WriteString(a, "metadata", meta->dump());
    t.module->save(model);
    a.write("model", model);
    return SaveArchiveAtomic(a, path);
  } catch (const c10::Error& e) {
    return IoError("cannot write model " + path + ": " + e.what_without_backtrace());
  }
}

int64_t Trainer::epoch() const { return impl_->epoch; }
int64_t Trainer::step_in_epoch() const { return impl_->step_in_epoch; }
int64_t Trainer::global_step() const { return impl_->global_step; }
const std::vector<EpochMetrics>& Trainer::history() const { return impl_->history; }

double Trainer::validation_dice() const {
  for (auto m = impl_->history.rbegin(); m != impl_->history.rend(); ++m) {
    if (m->mean_dice >= 0) return m->mean_dice;
  }
  return -1;
}
const ModelConfig& Trainer::config() const { return impl_->config; }
int64_t Trainer::train_voxels() const { return impl_->train_count; }
int64_t Trainer::validation_voxels() const { return impl_->val_count; }

std::string Trainer::WeightsDigest() const { return ParameterDigest(*impl_->module); }

}  // namespace idlegrid::models
