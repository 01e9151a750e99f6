#include "idlegrid/models/worker.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "idlegrid/models/config_json.h"
#include "idlegrid/models/model.h"
#include "idlegrid/models/review.h"
#include "idlegrid/models/runtime.h"
#include "idlegrid/models/strategy.h"
#include "idlegrid/models/trainer.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/protocol.h"
#include "idlegrid/shared/tiff_io.h"

namespace idlegrid::models {
namespace {

using Clock = std::chrono::steady_clock;

class Events {
 public:
  explicit Events(std::FILE* out) : out_(out) {}
  void Emit(Json j) {
    if (out_ == nullptr) return;
    // Messages may quote untrusted bytes: never let invalid UTF-8 throw here.
    std::string line = j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
    std::fwrite(line.data(), 1, line.size(), out_);
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
};

int ExitFor(const Status& st) {
  switch (st.code()) {
    case StatusCode::kOk: return kWorkerOk;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kUnimplemented:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kDataLoss:
    case StatusCode::kResourceExhausted: return kWorkerBadInput;
    case StatusCode::kNotFound:
    case StatusCode::kIoError:
    case StatusCode::kPermissionDenied: return kWorkerIoError;
    case StatusCode::kCancelled: return kWorkerInterrupted;
    default: return kWorkerInternal;
  }
}

int Fail(Events& events, int code, const Status& st) {
  events.Emit({{"event", "error"}, {"exit_code", code}, {"message", st.ToString()}});
  return code;
}

std::string InputPath(const WorkerArgs& args, const WorkUnit& unit, const std::string& name) {
  if (unit.inputs.count(name) == 0) return "";
  return args.inputs_dir + "/" + name;
}

bool Stopping(const WorkerArgs& args) { return args.stop != nullptr && args.stop->load(); }

int RunTrain(const WorkerArgs& args, const WorkUnit& unit, Events& events) {
  if (!unit.config.contains("model")) {
    return Fail(events, kWorkerBadUnit, InvalidArgumentError("unit.config.model is missing"));
  }
  StatusOr<ModelConfig> config = ConfigFromJson(unit.config["model"], "unit.config.model");
  if (!config.ok()) return Fail(events, kWorkerBadUnit, config.status());
  if (unit.epochs->end > config->epochs) {
    return Fail(events, kWorkerBadUnit,
                InvalidArgumentError("unit.epochs.end exceeds the model's " + std::to_string(config->epochs) + " epochs"));
  }
  const std::string image_path = InputPath(args, unit, "image");
  if (image_path.empty()) return Fail(events, kWorkerBadUnit, InvalidArgumentError("the unit has no \"image\" input"));
  StatusOr<Volume> image = ReadTiff(image_path);
  if (!image.ok()) return Fail(events, ExitFor(image.status()), image.status().WithContext("image"));
  std::optional<Volume> labels;
  if (config->task == Task::kSegment) {
    const std::string labels_path = InputPath(args, unit, "labels");
    if (labels_path.empty()) {
      return Fail(events, kWorkerBadUnit, InvalidArgumentError("segmentation needs a \"labels\" input"));
    }
    StatusOr<Volume> l = ReadTiff(labels_path);
    if (!l.ok()) return Fail(events, ExitFor(l.status()), l.status().WithContext("labels"));
    labels = std::move(*l);
  }
  TrainerOptions options;
  options.seed = static_cast<uint64_t>(unit.seed);
  if (unit.region) options.region = *unit.region;  // the inputs hold a crop of the volume
  StatusOr<std::unique_ptr<Trainer>> trainer =
      Trainer::Create(*config, *image, labels ? &*labels : nullptr, options);
  if (!trainer.ok()) return Fail(events, ExitFor(trainer.status()), trainer.status());
  Trainer& t = **trainer;
  const std::string checkpoint_in = InputPath(args, unit, "checkpoint");
  if (!checkpoint_in.empty()) {
    Status st = t.LoadCheckpoint(checkpoint_in);
    if (!st.ok()) return Fail(events, ExitFor(st), st);
  } else if (const std::string init = InputPath(args, unit, "init"); !init.empty()) {
    // Fine-tuning: the first unit of the chain starts from a model's weights (later units
    // resume from checkpoints, which hold them).
    if (unit.epochs->begin > 0) {
      return Fail(events, kWorkerBadUnit, InvalidArgumentError("a unit starting at epoch " + std::to_string(unit.epochs->begin) +
                                                               " needs a \"checkpoint\" input"));
    }
    Status st = t.InitializeFrom(init);
    if (!st.ok()) return Fail(events, st.code() == StatusCode::kFailedPrecondition ? kWorkerBadUnit : ExitFor(st), st);
  } else if (unit.epochs->begin > 0) {
    return Fail(events, kWorkerBadUnit,
                InvalidArgumentError("a unit starting at epoch " + std::to_string(unit.epochs->begin) +
                                     " needs a \"checkpoint\" input"));
  }
  if (t.epoch() < unit.epochs->begin) {
    return Fail(events, kWorkerBadUnit,
                InvalidArgumentError("the checkpoint is at epoch " + std::to_string(t.epoch()) +
                                     ", before the unit's first epoch " + std::to_string(unit.epochs->begin)));
  }
  events.Emit({{"event", "start"}, {"kind", "train_epochs"}, {"model", config->name},
               {"epoch", t.epoch()}, {"step", t.step_in_epoch()}, {"end_epoch", unit.epochs->end},
               {"train_voxels", t.train_voxels()}, {"validation_voxels", t.validation_voxels()}});

  const std::string checkpoint_out = args.outputs_dir + "/checkpoint.pt";
  auto write_metrics = [&]() {
    return WriteFileAtomic(args.outputs_dir + "/metrics.json",
                           Json{{"history", HistoryToJson(t.history())}}.dump() + "\n");
  };
  auto checkpoint = [&](const char* reason) -> Status {
    Status st = t.SaveCheckpoint(checkpoint_out);
    if (st.ok()) st = write_metrics();
    if (st.ok()) {
      events.Emit({{"event", "checkpoint"}, {"path", "checkpoint.pt"}, {"reason", reason},
                   {"epoch", t.epoch()}, {"step", t.step_in_epoch()}, {"global_step", t.global_step()}});
    }
    return st;
  };

  const int64_t total_steps = (unit.epochs->end - unit.epochs->begin) * config->steps_per_epoch;
  const int64_t first_step = unit.epochs->begin * config->steps_per_epoch;
  auto last_checkpoint = Clock::now(), last_progress = Clock::now();
  Status pending;  // a checkpoint failure inside a hook
  Trainer::Hooks hooks;
  hooks.should_stop = [&] { return Stopping(args) || !pending.ok(); };
  hooks.on_step = [&](const StepInfo& s) {
    auto now = Clock::now();
    if (now - last_progress >= std::chrono::milliseconds(500)) {
      last_progress = now;
      double fraction = static_cast<double>(s.global_step - first_step) / static_cast<double>(std::max<int64_t>(1, total_steps));
      events.Emit({{"event", "progress"}, {"fraction", std::clamp(fraction, 0.0, 1.0)}, {"epoch", s.epoch},
                   {"step", s.step_in_epoch}, {"loss", s.loss}});
    }
    if (now - last_checkpoint >= std::chrono::seconds(unit.checkpoint_every_s)) {
      last_checkpoint = now;
      pending = checkpoint("timer");
    }
  };
  hooks.on_epoch = [&](const EpochMetrics& m) {
    events.Emit({{"event", "epoch"}, {"epoch", m.epoch}, {"train_loss", m.train_loss},
                 {"dice", m.dice}, {"iou", m.iou}, {"mean_dice", m.mean_dice}});
    last_checkpoint = Clock::now();
    pending = checkpoint("epoch");
  };
  Status run = t.RunUntilEpoch(unit.epochs->end, hooks);
  if (!pending.ok()) return Fail(events, kWorkerIoError, pending);
  if (run.code() == StatusCode::kCancelled) {
    Status st = checkpoint("interrupt");
    if (!st.ok()) return Fail(events, kWorkerIoError, st);
    events.Emit({{"event", "interrupted"}, {"epoch", t.epoch()}, {"step", t.step_in_epoch()}});
    return kWorkerInterrupted;
  }
  if (!run.ok()) return Fail(events, ExitFor(run), run);
  Status st = checkpoint("done");
  if (st.ok() && t.epoch() >= config->epochs) {
    Json meta{{"unit_id", unit.unit_id}, {"job_id", unit.job_id}, {"seed", unit.seed},
              {"threads", unit.threads}};
    StatusOr<DataFingerprint> fp = ComputeFingerprint(*image, labels ? &*labels : nullptr, {});
    if (fp.ok()) {
      // Of what this unit held: with a region, the crop (its depth is the region's).
      meta["fingerprint"] = {{"shape", {fp->shape.z, fp->shape.y, fp->shape.x, fp->shape.c}},
                             {"p005", fp->p005}, {"p995", fp->p995}, {"mean", fp->mean},
                             {"std", fp->std}, {"labelled_per_class", fp->labelled_per_class}};
    }
    if (unit.region) meta["region"] = SliceRegionToJson(*unit.region);
    st = t.ExportModel(args.outputs_dir + "/model.pt", meta.dump());
  }
  if (!st.ok()) return Fail(events, kWorkerIoError, st);
  events.Emit({{"event", "done"}, {"epoch", t.epoch()},
               {"mean_dice", t.validation_dice()},
               {"model", t.epoch() >= config->epochs}});
  return kWorkerOk;
}

// The output files of a slab unit, written slice by slice as the prediction hands them over:
// labels.tif (+ probabilities.tif) or denoised.tif. Nothing is left on error (TiffWriter).
class SlabOutputs {
 public:
  static StatusOr<SlabOutputs> Open(const std::string& dir, const std::string& output, const VolumeShape& core,
                                    const ModelConfig& config) {
    SlabOutputs o;
    if (output == "denoised") {
      VolumeShape s = core;
      s.c = config.in_channels;
      IDLEGRID_ASSIGN_OR_RETURN(o.main_, TiffWriter::Open(dir + "/denoised.tif", s, DType::kFloat32));
      return o;
    }
    IDLEGRID_ASSIGN_OR_RETURN(o.main_, TiffWriter::Open(dir + "/labels.tif", core, DType::kUInt8));
    if (output == "probabilities") {
      VolumeShape s = core;
      s.c = config.num_classes;
      IDLEGRID_ASSIGN_OR_RETURN(o.probabilities_, TiffWriter::Open(dir + "/probabilities.tif", s, DType::kUInt8));
    }
    return o;
  }
  Status Append(const InferenceResult& part) {
    IDLEGRID_RETURN_IF_ERROR(main_->Append(part.denoised.empty() ? part.labels : part.denoised));
    return probabilities_ ? probabilities_->Append(part.probabilities) : Status::Ok();
  }
  Status Close() {
    IDLEGRID_RETURN_IF_ERROR(main_->Close());
    return probabilities_ ? probabilities_->Close() : Status::Ok();
  }

 private:
  std::unique_ptr<TiffWriter> main_, probabilities_;
};

int RunInfer(const WorkerArgs& args, const WorkUnit& unit, Events& events) {
  std::string output = "labels";
  if (unit.config.contains("output")) {
    if (!unit.config["output"].is_string()) {
      return Fail(events, kWorkerBadUnit, InvalidArgumentError("unit.config.output must be a string"));
    }
    output = unit.config["output"].get<std::string>();
  }
  if (output != "labels" && output != "probabilities" && output != "denoised") {
    return Fail(events, kWorkerBadUnit,
                InvalidArgumentError("unit.config.output: expected labels, probabilities or denoised"));
  }
  const std::string model_path = InputPath(args, unit, "model"), volume_path = InputPath(args, unit, "volume");
  if (model_path.empty() || volume_path.empty()) {
    return Fail(events, kWorkerBadUnit, InvalidArgumentError("infer_slab needs \"model\" and \"volume\" inputs"));
  }
  InferenceOptions options;
  options.probabilities = output == "probabilities";
  StatusOr<std::unique_ptr<Model>> model = Model::Load(model_path, options);
  if (!model.ok()) return Fail(events, ExitFor(model.status()), model.status());
  // Streamed: input slices are read as the tiles reach them and output slices written as
  // they are final, so the worker holds a few slices, not the slab.
  StatusOr<std::unique_ptr<TiffStackReader>> reader = TiffStackReader::Open(volume_path);
  if (!reader.ok()) return Fail(events, ExitFor(reader.status()), reader.status());
  const TiffInfo* info = &(*reader)->info();
  const SlabRange& slab = *unit.slab;
  // With a region the input holds the slab's slices alone (what the server cut for it);
  // without, the whole volume.
  const int64_t depth = unit.region ? unit.region->depth : info->shape.z;
  const int64_t first = unit.region ? slab.read_begin() : 0;
  if (slab.read_end() > depth) {
    return Fail(events, kWorkerBadUnit, OutOfRangeError("the slab reaches slice " + std::to_string(slab.read_end()) +
                                                        " of a volume of " + std::to_string(depth)));
  }
  if (unit.region && unit.region->frames > 1 &&
      (unit.region->FrameStart(slab.read_begin()) != unit.region->FrameStart(slab.read_end() - 1))) {
    return Fail(events, kWorkerBadUnit, OutOfRangeError("the slab spans two time points of the series"));
  }
  if (unit.region && info->shape.z != slab.read_end() - slab.read_begin()) {
    return Fail(events, kWorkerBadInput,
                DataLossError("input \"volume\" has " + std::to_string(info->shape.z) + " slices; the slab needs " +
                              std::to_string(slab.read_end() - slab.read_begin()) + " (slices " +
                              std::to_string(slab.read_begin()) + " to " + std::to_string(slab.read_end() - 1) + ")"));
  }
  if (((*model)->config().task == Task::kDenoise) != (output == "denoised")) {
    return Fail(events, kWorkerBadUnit, InvalidArgumentError("output \"" + output + "\" does not fit this model"));
  }
  events.Emit({{"event", "start"}, {"kind", "infer_slab"}, {"z_begin", slab.z_begin}, {"z_end", slab.z_end}});
  // A slab takes minutes on one thread: progress twice a second, and a stop between tiles
  // (a slab has no checkpoint; it runs again whole).
  auto interrupted = [&] {
    events.Emit({{"event", "interrupted"}, {"z_begin", slab.z_begin}, {"z_end", slab.z_end}});
    return kWorkerInterrupted;
  };
  if (Stopping(args)) return interrupted();
  PredictHooks hooks;
  hooks.should_stop = [&] { return Stopping(args); };
  auto last_progress = Clock::now();
  hooks.on_progress = [&](double fraction) {
    const auto now = Clock::now();
    if (now - last_progress < std::chrono::milliseconds(500)) return;
    last_progress = now;
    events.Emit({{"event", "progress"}, {"fraction", fraction}});
  };
  // A time point of a series is a volume of its own: the slab in its coordinates.
  SlabRange in_frame = slab;
  int64_t frame_depth = depth, frame_start = 0;
  if (unit.region && unit.region->frames > 1) {
    frame_start = unit.region->FrameStart(slab.z_begin);
    frame_depth = unit.region->FrameDepth();
    in_frame.z_begin -= frame_start;
    in_frame.z_end -= frame_start;
  }
  const VolumeShape& in_shape = info->shape;
  const VolumeShape core{slab.depth(), in_shape.y, in_shape.x, 1};
  StatusOr<SlabOutputs> outputs = SlabOutputs::Open(args.outputs_dir, output, core, (*model)->config());
  if (!outputs.ok()) return Fail(events, kWorkerIoError, outputs.status());
  // Frame coordinates -> the file's slices.
  auto read = [&](int64_t z) { return (*reader)->ReadSlices(z + frame_start - first, z + frame_start - first + 1); };
  auto write = [&](int64_t, const InferenceResult& part) { return outputs->Append(part); };
  Status st = (*model)->PredictStreamed(VolumeShape{1, in_shape.y, in_shape.x, in_shape.c}, in_frame, frame_depth,
                                        read, write, hooks);
  if (st.code() == StatusCode::kCancelled) return interrupted();
  if (!st.ok()) return Fail(events, ExitFor(st), st);
  st = outputs->Close();
  if (!st.ok()) return Fail(events, kWorkerIoError, st);
  events.Emit({{"event", "progress"}, {"fraction", 1.0}});
  events.Emit({{"event", "done"}, {"slices", slab.depth()}});
  return kWorkerOk;
}

// The models a review unit names, loaded with their class probabilities.
StatusOr<std::vector<std::pair<std::string, std::unique_ptr<Model>>>> LoadReviewModels(const WorkerArgs& args,
                                                                                     const WorkUnit& unit) {
  const Json& names = unit.config.contains("models") ? unit.config["models"] : Json();
  if (!names.is_array() || names.empty() || names.size() > 16) {
    return InvalidArgumentError("unit.config.models must list 1 to 16 model inputs");
  }
  InferenceOptions options;
  options.probabilities = true;
  std::vector<std::pair<std::string, std::unique_ptr<Model>>> models;
  for (const Json& n : names) {
    const std::string name = n.is_string() ? n.get<std::string>() : "";
    const std::string path = InputPath(args, unit, name);
    if (path.empty()) return InvalidArgumentError("unit.config.models names \"" + name.substr(0, 64) + "\", not an input");
    IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<Model> m, Model::Load(path, options));
    if (m->config().task != Task::kSegment ||
        (!models.empty() && m->config().num_classes != models[0].second->config().num_classes)) {
      return InvalidArgumentError("input \"" + name + "\" is not a segmentation model of the others' classes");
    }
    models.emplace_back(name, std::move(m));
  }
  return models;
}

int RunReview(const WorkerArgs& args, const WorkUnit& unit, Events& events) {
  StatusOr<std::vector<std::pair<std::string, std::unique_ptr<Model>>>> models = LoadReviewModels(args, unit);
  if (!models.ok()) return Fail(events, ExitFor(models.status()), models.status());
  const std::string volume_path = InputPath(args, unit, "volume");
  if (volume_path.empty() || !unit.region) {
    return Fail(events, kWorkerBadUnit, InvalidArgumentError("review_slices needs a \"volume\" input and a region"));
  }
  const SliceRegion& region = *unit.region;
  StatusOr<std::unique_ptr<TiffStackReader>> reader = TiffStackReader::Open(volume_path);
  if (!reader.ok()) return Fail(events, ExitFor(reader.status()), reader.status());
  const VolumeShape& in = (*reader)->info().shape;
  if (in.z != region.slices()) {
    return Fail(events, kWorkerBadInput, DataLossError("input \"volume\" has " + std::to_string(in.z) +
                                                       " slices; the region holds " + std::to_string(region.slices())));
  }
  events.Emit({{"event", "start"}, {"kind", "review_slices"}, {"slices", unit.review_slices.size()}});
  StatusOr<std::unique_ptr<TiffWriter>> map = TiffWriter::Open(
      args.outputs_dir + "/uncertainty.tif", {static_cast<int64_t>(unit.review_slices.size()), in.y, in.x, 1}, DType::kUInt8);
  if (!map.ok()) return Fail(events, kWorkerIoError, map.status());
  PredictHooks hooks;
  hooks.should_stop = [&] { return Stopping(args); };
  const int64_t frame_depth = region.FrameDepth();
  Json slices = Json::array();
  std::vector<double> agreement(models->size(), 0);
  const VolumeShape plane{1, in.y, in.x, in.c};
  for (size_t i = 0; i < unit.review_slices.size(); ++i) {
    const int64_t z = unit.review_slices[i], start = region.FrameStart(z);
    std::vector<Volume> probabilities;
    for (const auto& [name, model] : *models) {
      // The slice with the halo this model needs, within its time point and the region.
      const int64_t halo = model->config().InferenceHalo(), zf = z - start;
      const SlabRange one{zf, zf + 1, std::min(halo, zf), std::min(halo, frame_depth - zf - 1)};
      auto read = [&](int64_t f) -> StatusOr<Volume> {
        const int64_t local = region.Local(f + start);
        if (local < 0) return DataLossError("slice " + std::to_string(f + start) + " is not in the unit's region");
        return (*reader)->ReadSlices(local, local + 1);
      };
      auto write = [&](int64_t, const InferenceResult& part) {
        probabilities.push_back(part.probabilities);
        return Status::Ok();
      };
      Status st = model->PredictStreamed(plane, one, frame_depth, read, write, hooks);
      if (st.code() == StatusCode::kCancelled) {
        events.Emit({{"event", "interrupted"}});
        return kWorkerInterrupted;
      }
      if (!st.ok()) return Fail(events, ExitFor(st), st.WithContext(name));
    }
    StatusOr<EnsembleSlice> score = ScoreEnsemble(probabilities);
    if (!score.ok()) return Fail(events, kWorkerInternal, score.status());
    Status st = (*map)->Append(score->uncertainty);
    if (!st.ok()) return Fail(events, kWorkerIoError, st);
    slices.push_back({{"z", z}, {"entropy", score->entropy}, {"disagreement", score->disagreement},
                      {"uncertain_fraction", score->uncertain_fraction}});
    for (size_t m = 0; m < agreement.size(); ++m) agreement[m] += score->agreement[m];
    events.Emit({{"event", "progress"}, {"fraction", static_cast<double>(i + 1) / static_cast<double>(unit.review_slices.size())}});
  }
  Json agree = Json::object();
  for (size_t m = 0; m < agreement.size(); ++m) {
    agree[(*models)[m].first] = agreement[m] / static_cast<double>(unit.review_slices.size());
  }
  Status st = (*map)->Close();
  if (st.ok()) st = WriteFileAtomic(args.outputs_dir + "/review.json", Json{{"slices", slices}, {"agreement", agree}}.dump());
  if (!st.ok()) return Fail(events, kWorkerIoError, st);
  events.Emit({{"event", "done"}, {"slices", unit.review_slices.size()}});
  return kWorkerOk;
}

}  // namespace

int RunWorkUnit(const WorkerArgs& args) {
  Events events(args.events);
  StatusOr<std::string> text = ReadFile(args.unit_path, 1 << 20);
  if (!text.ok()) return Fail(events, kWorkerIoError, text.status());
  StatusOr<WorkUnit> unit = ParseMessage<WorkUnit>(*text);
  if (!unit.ok()) return Fail(events, kWorkerBadUnit, unit.status());
  for (const auto& [name, ref] : unit->inputs) {
    (void)ref;
    if (!std::filesystem::is_regular_file(args.inputs_dir + "/" + name)) {
      return Fail(events, kWorkerIoError,
                  NotFoundError("input \"" + name + "\" is missing from " + args.inputs_dir));
    }
  }
  Status st = MakeDirs(args.outputs_dir);
  if (!st.ok()) return Fail(events, kWorkerIoError, st);
  ConfigureCpuRuntime(static_cast<int>(unit->threads));
  switch (unit->kind) {
    case UnitKind::kTrainEpochs: return RunTrain(args, *unit, events);
    case UnitKind::kReviewSlices: return RunReview(args, *unit, events);
    default: return RunInfer(args, *unit, events);
  }
}

}  // namespace idlegrid::models
