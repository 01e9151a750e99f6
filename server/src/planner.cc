#include "planner.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>

#include "idlegrid/models/config_json.h"
#include "idlegrid/shared/crypto.h"
#include "idlegrid/shared/tiff_io.h"
#include "splitter.h"

namespace idlegrid::server {
namespace {

// Slices read at a time while scanning a stack (bounded memory whatever its size).
constexpr int64_t kScanBytes = int64_t{64} << 20;

StatusOr<models::ModelConfig> ConfigFrom(const Json& j, const std::string& where) {
  IDLEGRID_ASSIGN_OR_RETURN(models::ModelConfig c, models::ConfigFromJson(j, where));
  IDLEGRID_RETURN_IF_ERROR(c.Validate());
  return c;
}

int64_t SlicesPerRead(const TiffInfo& info) {
  const int64_t slice = std::max<int64_t>(1, info.shape.y * info.shape.x * info.shape.c *
                                                 static_cast<int64_t>(DTypeSize(info.dtype)));
  return std::max<int64_t>(1, kScanBytes / slice);
}

// Calls `f(slices, z_begin)` over the whole stack, a bounded range at a time.
template <typename F>
Status ScanStack(TiffStackReader& reader, F f) {
  const int64_t step = SlicesPerRead(reader.info());
  for (int64_t z = 0; z < reader.info().shape.z; z += step) {
    IDLEGRID_ASSIGN_OR_RETURN(Volume v, reader.ReadSlices(z, std::min(reader.info().shape.z, z + step)));
    IDLEGRID_RETURN_IF_ERROR(f(v, z));
  }
  return Status::Ok();
}

// The slices of a label stack that hold a label (streamed).
StatusOr<std::vector<int64_t>> LabelledSlices(const std::string& path) {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffStackReader> reader, TiffStackReader::Open(path));
  std::vector<int64_t> out;
  IDLEGRID_RETURN_IF_ERROR(ScanStack(*reader, [&](const Volume& v, int64_t z0) {
    const size_t plane = v.slice_bytes();
    for (int64_t z = 0; z < v.shape().z; ++z) {
      const uint8_t* p = v.slice_bytes_at(z);
      if (std::any_of(p, p + plane, [](uint8_t b) { return b != 0; })) out.push_back(z0 + z);
    }
    return Status::Ok();
  }));
  return out;
}

// Labels must cover the image slice for slice: a series' labels are the same time points.
Status CheckLabelsFit(const TiffInfo& image, const TiffInfo& labels) {
  const VolumeShape &is = image.shape, &ls = labels.shape;
  const int64_t depth = is.z / std::max<int64_t>(image.frames, 1);
  if (image.frames > 1 && ls.z == depth && ls.y == is.y && ls.x == is.x) {
    return InvalidArgumentError("input \"labels\" is one volume of " + std::to_string(ls.z) + " slices, but the image is a series of " +
                                std::to_string(image.frames) + " time points of " + std::to_string(depth) +
                                " slices: save the labels as a hyperstack of the same time points (unpainted ones empty), "
                                "or say which time point they belong to (idlegrid submit --labels-time-point T)");
  }
  if (ls.z != is.z || ls.y != is.y || ls.x != is.x) {
    return InvalidArgumentError("image " + is.ToString() + " and labels " + ls.ToString() + " differ in shape");
  }
  if (labels.frames > 1 && labels.frames != image.frames) {
    return InvalidArgumentError("input \"labels\" has " + std::to_string(labels.frames) + " time points (frames), the image " +
                                std::to_string(image.frames));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<models::DataFingerprint> FingerprintOfFiles(const std::string& image_path,
                                                     const std::string& labels_path,
                                                     const models::Resources& resources) {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffStackReader> image, TiffStackReader::Open(image_path));
  const TiffInfo info = image->info();
  models::FingerprintBuilder b(info.shape, info.dtype, models::SampleSlices(info.shape, info.dtype, models::kFingerprintSampleBytes));
  Status read = b.AddSampledImage([&](int64_t z0, int64_t z1) { return image->ReadSlices(z0, z1); }, SlicesPerRead(info));
  if (!read.ok()) return read.WithContext("image");
  if (!labels_path.empty()) {
    StatusOr<std::unique_ptr<TiffStackReader>> labels = TiffStackReader::Open(labels_path);
    if (!labels.ok()) return labels.status().WithContext("labels");
    Status st = ScanStack(**labels, [&](const Volume& v, int64_t z0) { return b.AddLabels(v, z0); });
    if (!st.ok()) return st.WithContext("labels");
  }
  IDLEGRID_ASSIGN_OR_RETURN(models::DataFingerprint fp, b.Finish(resources, !labels_path.empty()));
  fp.frames = info.frames;
  return fp;
}

StatusOr<Json> ChainsFor(const std::string& image_path, const std::string& labels_path, const Json& chains, bool replan,
                         bool sweep, const QueueOptions& options) {
  models::Resources r;
  r.threads = options.unit_threads;
  IDLEGRID_ASSIGN_OR_RETURN(models::DataFingerprint fp, FingerprintOfFiles(image_path, labels_path, r));
  std::vector<models::ModelConfig> configs;
  if (replan) {
    configs = models::PlanCandidates(fp);
    if (!sweep) configs.resize(1);
  } else {
    for (const Json& ch : chains) {
      IDLEGRID_ASSIGN_OR_RETURN(models::ModelConfig c, ConfigFrom(ch["config"], "chain " + ch.value("chain", std::string())));
      c.norm = models::Normalization{fp.p005, fp.p995, fp.mean, fp.std};
      configs.push_back(c);
    }
  }
  Json out = Json::array();
  for (size_t i = 0; i < configs.size(); ++i) {
    out.push_back({{"chain", "c" + std::to_string(i)}, {"config", models::ConfigToJson(configs[i])}});
  }
  return out;
}

StatusOr<BlobRef> CutRegion(const BlobStore& blobs, const BlobRef& source, const SliceRegion& region,
                            bool deflate, const std::atomic<bool>* cancel) {
  IDLEGRID_ASSIGN_OR_RETURN(std::string path, blobs.PathOf(source.sha256));
  const std::string tmp = blobs.TempPath("cut-" + RandomToken(8) + ".tif");
  TiffWriteOptions options;
  options.deflate = deflate;
  Status st = CopyTiffSlices(path, region, tmp, options, kScanBytes, cancel);
  if (!st.ok()) {
    std::remove(tmp.c_str());
    return st.code() == StatusCode::kCancelled ? st : st.WithContext("volume " + source.sha256.substr(0, 12));
  }
  return blobs.PutTemporary(tmp);
}

PlannedUnit WithPrep(std::string chain, WorkUnit u, std::string after) {
  PlannedUnit p{std::move(chain), std::move(u), std::move(after), {}};
  if (p.unit.region && !p.unit.region->whole()) {
    for (const char* name : {"image", "labels", "volume"}) {
      if (p.unit.inputs.count(name)) p.prep.push_back(name);
    }
  }
  return p;
}

StatusOr<BlobRef> Planner::Input(const Job& job, const std::string& name) const {
  auto it = job.inputs.find(name);
  if (it == job.inputs.end()) {
    return InvalidArgumentError(std::string("a ") + JobKindName(job.kind) + " job needs the input \"" + name + "\"");
  }
  return it->second;
}

StatusOr<std::string> Planner::PathOf(const Job& job, const std::string& name) const {
  IDLEGRID_ASSIGN_OR_RETURN(BlobRef ref, Input(job, name));
  return blobs_->PathOf(ref.sha256);
}

StatusOr<TiffInfo> Planner::InfoOf(const Job& job, const std::string& name) const {
  IDLEGRID_ASSIGN_OR_RETURN(std::string path, PathOf(job, name));
  StatusOr<TiffInfo> info = ProbeTiff(path);
  if (!info.ok()) return InvalidArgumentError("input \"" + name + "\" is not a readable TIFF: " + info.status().message());
  return *info;
}

StatusOr<JobPlan> Planner::Plan(const Job& job) const {
  IDLEGRID_ASSIGN_OR_RETURN(JobPlan plan, job.kind == JobKind::kInfer ? PlanInfer(job) : PlanTraining(job));
  // How ambiguous files were read, for the user (JobStatus shows them).
  Json notes = Json::array();
  for (const char* name : {"image", "labels", "volume"}) {
    if (!job.inputs.count(name)) continue;
    StatusOr<std::string> path = PathOf(job, name);
    StatusOr<TiffInfo> info = path.ok() ? ProbeTiff(*path) : StatusOr<TiffInfo>(path.status());
    if (info.ok() && !info->note.empty()) notes.push_back("input \"" + std::string(name) + "\": " + info->note);
  }
  if (!notes.empty()) plan.stored["notes"] = notes;
  return plan;
}

StatusOr<JobPlan> Planner::PlanInfer(const Job& job) const {
  const Json& cfg = job.config;
  IDLEGRID_ASSIGN_OR_RETURN(BlobRef model, Input(job, "model"));
  IDLEGRID_ASSIGN_OR_RETURN(TiffInfo info, InfoOf(job, "volume"));
  const VolumeShape shape = info.shape;
  Json config_json;
  if (cfg.contains("model")) {
    config_json = cfg["model"];
  } else {
    IDLEGRID_ASSIGN_OR_RETURN(config_json, recorded_(model, "the model"));
  }
  IDLEGRID_ASSIGN_OR_RETURN(models::ModelConfig c, ConfigFrom(config_json, "config.model"));
  const std::string output = cfg.value("output", c.task == models::Task::kDenoise ? "denoised" : "labels");
  if (output != "labels" && output != "probabilities" && output != "denoised") {
    return InvalidArgumentError("config.output must be labels, probabilities or denoised");
  }
  if ((output == "denoised") != (c.task == models::Task::kDenoise)) {
    return InvalidArgumentError("output \"" + output + "\" does not match the model's task");
  }
  Json stage{{"type", "infer"}, {"output", output}, {"volume", "volume"},
             {"model", model.ToJson()}, {"config", models::ConfigToJson(c)}};
  int64_t z_begin = 0, z_end = -1;
  if (cfg.contains("z_range")) {  // a part of the volume (the wizard's compare view)
    const Json& z = cfg["z_range"];
    if (!z.is_array() || z.size() != 2 || !z[0].is_number_integer() || !z[1].is_number_integer() ||
        z[0].get<int64_t>() < 0 || z[0].get<int64_t>() >= z[1].get<int64_t>() || z[1].get<int64_t>() > shape.z) {
      return InvalidArgumentError("config.z_range must be [first, end) slices inside the volume");
    }
    stage["z_range"] = z;
    z_begin = z[0].get<int64_t>();
    z_end = z[1].get<int64_t>();
  }
  JobPlan out;
  IDLEGRID_ASSIGN_OR_RETURN(std::vector<WorkUnit> slabs,
                            SplitInfer(job.job_id, "s0", c, model, job.inputs.at("volume"), shape, output,
                                       options_, z_begin, z_end, info.frames));
  for (WorkUnit& u : slabs) out.units.push_back(WithPrep("s0", std::move(u), ""));
  out.stored = Json{{"job", job.ToJson()}, {"stages", Json::array({stage})},
                    {"shape", {shape.z, shape.y, shape.x, shape.c}}, {"frames", info.frames}};
  return out;
}

// The job's configurations: its own, a fine-tuned model's recorded one, or the strategy's
// from a fingerprint of the data (kept in data->fp).
StatusOr<std::vector<models::ModelConfig>> Planner::Configs(const Job& job, TrainingData* data) const {
  const Json& cfg = job.config;
  std::vector<models::ModelConfig> configs;
  const char* key = job.kind == JobKind::kSweep ? "candidates" : "model";
  if (cfg.contains(key) && job.kind == JobKind::kSweep) {
    if (!cfg[key].is_array() || cfg[key].empty() || cfg[key].size() > 16) {
      return InvalidArgumentError("config.candidates must be a list of 1 to 16 model configurations");
    }
    for (size_t i = 0; i < cfg[key].size(); ++i) {
      IDLEGRID_ASSIGN_OR_RETURN(models::ModelConfig c, ConfigFrom(cfg[key][i], "config.candidates[" + std::to_string(i) + "]"));
      configs.push_back(c);
    }
  } else if (cfg.contains(key)) {
    IDLEGRID_ASSIGN_OR_RETURN(models::ModelConfig c, ConfigFrom(cfg[key], "config.model"));
    configs.push_back(c);
  } else if (job.kind == JobKind::kTrain && job.inputs.count("init")) {
    // Fine-tuning a model this server trained: its own configuration.
    IDLEGRID_ASSIGN_OR_RETURN(Json recorded, recorded_(job.inputs.at("init"), "the \"init\" model"));
    IDLEGRID_ASSIGN_OR_RETURN(models::ModelConfig c, ConfigFrom(recorded, "init model"));
    configs.push_back(c);
  } else {
    // The no-parameter strategy: a fingerprint from a bounded sample of the image.
    models::Resources r;
    r.threads = options_.unit_threads;
    IDLEGRID_ASSIGN_OR_RETURN(std::string image_path, PathOf(job, "image"));
    std::string labels_path;
    if (data->segment) {
      IDLEGRID_ASSIGN_OR_RETURN(labels_path, PathOf(job, "labels"));
    }
    IDLEGRID_ASSIGN_OR_RETURN(data->fp, FingerprintOfFiles(image_path, labels_path, r));
    if (data->segment) {
      configs = models::PlanCandidates(*data->fp);
      if (job.kind == JobKind::kTrain) configs.resize(1);
    } else {
      configs.push_back(models::PlanDenoiser(*data->fp));
    }
  }
  for (const models::ModelConfig& c : configs) {
    if (c.task == models::Task::kSegment && !data->segment) {
      return InvalidArgumentError("configuration " + c.name + " segments, but the job has no labels");
    }
  }
  if (job.kind == JobKind::kDenoise && configs[0].task != models::Task::kDenoise) {
    return InvalidArgumentError("a denoise job needs a denoising configuration");
  }
  return configs;
}

StatusOr<std::vector<PlannedUnit>> SplitTrainStage(const std::string& job_id, const Json& stage, const NamedBlobs& inputs,
                                                   const VolumeShape& shape, int64_t frames, const QueueOptions& options) {
  const int64_t seed = stage.value("seed", int64_t{1});
  const int64_t epochs_per_unit = stage.value("epochs_per_unit", int64_t{0});
  std::vector<int64_t> labelled_z;
  if (stage.contains("labelled_z")) labelled_z = stage["labelled_z"].get<std::vector<int64_t>>();
  std::vector<PlannedUnit> out;
  for (const Json& ch : stage["chains"]) {
    const std::string chain = ch["chain"];
    IDLEGRID_ASSIGN_OR_RETURN(models::ModelConfig c, ConfigFrom(ch["config"], "chain " + chain));
    models::DataFingerprint where;
    where.shape = shape;
    where.frames = frames;
    where.labelled_z = labelled_z;
    if (c.task == models::Task::kSegment && where.labelled_z.empty()) {
      return InvalidArgumentError("input \"labels\" has no labelled pixels: paint at least two classes");
    }
    const SliceRegion region = models::TrainingRegion(c, where);
    VolumeShape held = shape;
    held.z = region.slices();  // what a unit holds: its memory estimate
    NamedBlobs chain_inputs = inputs;
    if (c.task == models::Task::kDenoise) chain_inputs.erase("labels");
    std::string after;
    for (WorkUnit& u : SplitTrainChain(job_id, chain, c, chain_inputs, held, seed, options, epochs_per_unit)) {
      u.region = region;
      const std::string id = u.unit_id;
      out.push_back(WithPrep(chain, std::move(u), after));
      after = id;
    }
  }
  return out;
}

StatusOr<Json> Planner::DenoiserStage(const Job& job, const TrainingData& data) const {
  const Json& cfg = job.config;
  models::ModelConfig c;
  if (cfg.contains("denoiser")) {
    IDLEGRID_ASSIGN_OR_RETURN(c, ConfigFrom(cfg["denoiser"], "config.denoiser"));
    if (c.task != models::Task::kDenoise) return InvalidArgumentError("config.denoiser must be a denoising configuration");
  } else {
    models::Resources r;
    r.threads = options_.unit_threads;
    std::optional<models::DataFingerprint> fp = data.fp;
    if (!fp) {
      IDLEGRID_ASSIGN_OR_RETURN(std::string image_path, PathOf(job, "image"));
      IDLEGRID_ASSIGN_OR_RETURN(fp, FingerprintOfFiles(image_path, "", r));
    }
    c = models::PlanDenoiser(*fp);
  }
  return Json{{"type", "train"}, {"role", "denoiser"},
              {"chains", Json::array({Json{{"chain", "d0"}, {"config", models::ConfigToJson(c)}}})}};
}

StatusOr<JobPlan> Planner::PlanTraining(const Job& job) const {
  const Json& cfg = job.config;
  const int64_t seed = cfg.contains("seed") && cfg["seed"].is_number_integer() ? cfg["seed"].get<int64_t>() : 1;
  TrainingData data;
  IDLEGRID_ASSIGN_OR_RETURN(TiffInfo image, InfoOf(job, "image"));
  data.shape = image.shape;
  const VolumeShape shape = data.shape;
  const int64_t frames = image.frames;
  data.segment = job.kind != JobKind::kDenoise && job.inputs.count("labels") > 0;
  if (job.kind == JobKind::kSweep && !data.segment) return InvalidArgumentError("a sweep job needs the input \"labels\"");
  if (data.segment) {
    IDLEGRID_ASSIGN_OR_RETURN(TiffInfo labels, InfoOf(job, "labels"));
    IDLEGRID_RETURN_IF_ERROR(CheckLabelsFit(image, labels));
  }
  // Denoise, then segment: the denoiser's output is what the candidates train on and segment.
  if (cfg.contains("denoise") && (!cfg["denoise"].is_string() || (cfg["denoise"] != "first" && cfg["denoise"] != "no"))) {
    return InvalidArgumentError("config.denoise must be \"first\" or \"no\"");
  }
  const bool denoise_first = cfg.value("denoise", std::string("no")) == "first";
  if (denoise_first && !data.segment) {
    return InvalidArgumentError("config.denoise \"first\" denoises before segmenting: the job needs the input \"labels\"");
  }
  if (cfg.contains("denoiser") && !denoise_first) return InvalidArgumentError("config.denoiser needs config.denoise \"first\"");
  IDLEGRID_ASSIGN_OR_RETURN(std::vector<models::ModelConfig> configs, Configs(job, &data));
  Json train{{"type", "train"}, {"chains", Json::array()}};
  for (size_t i = 0; i < configs.size(); ++i) {
    train["chains"].push_back({{"chain", "c" + std::to_string(i)}, {"config", models::ConfigToJson(configs[i])}});
  }
  // An explicit split (tests, experiments) overrides the cost estimate.
  int64_t epochs_per_unit = 0;
  if (cfg.contains("epochs_per_unit")) {
    epochs_per_unit = cfg["epochs_per_unit"].is_number_integer() ? cfg["epochs_per_unit"].get<int64_t>() : 0;
    if (epochs_per_unit < 1) return InvalidArgumentError("config.epochs_per_unit must be a positive integer");
  }
  if (data.fp) {
    data.labelled_z = data.fp->labelled_z;
  } else if (data.segment) {  // the crop needs the labelled slices
    IDLEGRID_ASSIGN_OR_RETURN(std::string labels_path, PathOf(job, "labels"));
    StatusOr<std::vector<int64_t>> z = LabelledSlices(labels_path);
    if (!z.ok()) return z.status().WithContext("labels");
    data.labelled_z = *z;
  }
  train["seed"] = seed;
  train["epochs_per_unit"] = epochs_per_unit;
  train["labelled_z"] = data.labelled_z;
  Json stages = Json::array();
  std::string volume = "image";
  if (denoise_first) {
    IDLEGRID_ASSIGN_OR_RETURN(Json denoiser, DenoiserStage(job, data));
    denoiser["seed"] = seed;
    stages.push_back(denoiser);
    stages.push_back(Json{{"type", "infer"}, {"output", "denoised"}, {"volume", "image"}});
    volume = "denoised";
    train["volume"] = volume;
    // Planned again from the denoised volume: the strategy's candidates whole, given ones
    // their intensity normalisation (the denoiser changes the spread of intensities).
    // (A fine-tuned model keeps the normalisation it learned with.)
    if (data.fp) {
      train["replan"] = "strategy";
    } else if (!job.inputs.count("init")) {
      train["replan"] = "normalisation";
    }
  }
  stages.push_back(train);
  // Where to correct: a sweep's candidates (and a retrain that asks) score a sample of the
  // volume's slices, so that the user goes where they are unsure.
  if (cfg.contains("review") && !cfg["review"].is_boolean()) return InvalidArgumentError("config.review must be true or false");
  if (data.segment && cfg.value("review", job.kind == JobKind::kSweep)) {
    stages.push_back(Json{{"type", "review"}, {"volume", volume}});
  }
  if (job.kind == JobKind::kDenoise) {
    stages.push_back(Json{{"type", "infer"}, {"output", "denoised"}, {"volume", "image"}});
  } else if (cfg.contains("infer")) {
    if (!cfg["infer"].is_string() || (cfg["infer"] != "labels" && cfg["infer"] != "probabilities")) {
      return InvalidArgumentError("config.infer must be \"labels\" or \"probabilities\"");
    }
    stages.push_back(Json{{"type", "infer"}, {"output", cfg["infer"]}, {"volume", volume}});
  }
  NamedBlobs inputs;
  inputs["image"] = job.inputs.at("image");
  if (job.inputs.count("labels")) inputs["labels"] = job.inputs.at("labels");
  if (job.inputs.count("init")) inputs["init"] = job.inputs.at("init");  // fine-tuning
  JobPlan out;
  IDLEGRID_ASSIGN_OR_RETURN(out.units, SplitTrainStage(job.job_id, stages[0], inputs, shape, frames, options_));
  out.stored = Json{{"job", job.ToJson()}, {"stages", stages}, {"shape", {shape.z, shape.y, shape.x, shape.c}},
                    {"frames", frames}};
  return out;
}

}  // namespace idlegrid::server
