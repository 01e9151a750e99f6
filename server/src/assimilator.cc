#include "assimilator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>

#include "idlegrid/models/config_json.h"
#include "idlegrid/shared/tiff_io.h"
#include "splitter.h"

namespace idlegrid::server {
namespace {
constexpr int64_t kMaxMetricsBytes = 16 << 20;

// The time points of the job's image (plans from before series have none: 1).
int64_t FramesOf(const Json& plan) {
  return plan.contains("frames") && plan["frames"].is_number_integer() ? std::max<int64_t>(1, plan["frames"].get<int64_t>()) : 1;
}
}  // namespace

double ChainScore(const Json& metrics) {
  if (!metrics.is_object() || !metrics.contains("history") || !metrics["history"].is_array() ||
      metrics["history"].empty()) {
    return -1e300;
  }
  const Json& history = metrics["history"];
  for (auto e = history.rbegin(); e != history.rend(); ++e) {
    if (e->is_object() && e->contains("mean_dice") && (*e)["mean_dice"].is_number() &&
        (*e)["mean_dice"].get<double>() >= 0) {  // -1: not validated
      return (*e)["mean_dice"].get<double>();
    }
  }
  const Json& last = history.back();
  if (last.is_object() && last.contains("train_loss") && last["train_loss"].is_number()) {
    return -last["train_loss"].get<double>();
  }
  return -1e300;
}


StageOutcome Assimilator::Assimilate(const std::string& job_id, int64_t stage, const Json& plan,
                                     const Json& job_outputs, const std::vector<FinishedUnit>& finished) const {
  StageOutcome o;
  o.job_outputs = job_outputs.is_object() ? job_outputs : Json::object();
  const Json& st = plan["stages"][stage];
  if (st["type"] == "train") {
    RankChains(job_id, stage, plan, finished, &o);
  } else {
    Stitch(job_id, plan, st, finished, &o);
  }
  return o;
}

void Assimilator::RankChains(const std::string& job_id, int64_t stage, const Json& plan,
                             const std::vector<FinishedUnit>& finished, StageOutcome* o) const {
  const Json& st = plan["stages"][stage];
  const bool last_stage = stage + 1 >= static_cast<int64_t>(plan["stages"].size());
  Json ranking = Json::array();
  std::map<std::string, const FinishedUnit*> last_of_chain;
  for (const FinishedUnit& f : finished) last_of_chain[f.chain] = &f;  // ordered by seq
  for (const Json& c : st["chains"]) {
    const std::string chain = c["chain"];
    const FinishedUnit* f = last_of_chain.count(chain) ? last_of_chain[chain] : nullptr;
    if (f == nullptr || !f->outputs.contains("model") || !f->outputs.contains("metrics")) {
      o->failure = "chain " + chain + " finished without a model";
      break;
    }
    StatusOr<std::string> text = blobs_->Read(f->outputs["metrics"]["sha256"], kMaxMetricsBytes);
    StatusOr<Json> metrics = text.ok() ? ParseJson(*text) : StatusOr<Json>(text.status());
    const double score = metrics.ok() ? ChainScore(*metrics) : -1e300;
    ranking.push_back({{"chain", chain}, {"name", c["config"]["name"]},
                       {"architecture", c["config"]["architecture"]},
                       {"score", std::isfinite(score) && score > -1e299 ? Json(score) : Json(nullptr)},
                       {"model", f->outputs["model"]}, {"metrics", f->outputs["metrics"]}});
    o->models.emplace_back(f->outputs["model"]["sha256"], c["config"].dump());
    o->job_outputs["model-" + chain] = f->outputs["model"];
  }
  if (o->failure.empty()) {
    std::stable_sort(ranking.begin(), ranking.end(), [](const Json& a, const Json& b) {
      const double sa = a["score"].is_null() ? -1e300 : a["score"].get<double>();
      const double sb = b["score"].is_null() ? -1e300 : b["score"].get<double>();
      return sa > sb;
    });
    o->summary["ranking"] = ranking;
    o->job_outputs["model"] = ranking[0]["model"];
    o->job_outputs["metrics"] = ranking[0]["metrics"];
    if (!last_stage) {
      const Json& inf = plan["stages"][stage + 1];
      Json best_config;
      for (const Json& c : st["chains"]) {
        if (c["chain"] == ranking[0]["chain"]) best_config = c["config"];
      }
      StatusOr<models::ModelConfig> config = models::ConfigFromJson(best_config);
      StatusOr<BlobRef> model = BlobRef::FromJson(ranking[0]["model"]);
      StatusOr<BlobRef> volume = BlobRef::FromJson(plan["job"]["inputs"][inf["volume"].get<std::string>()]);
      const Json& sh = plan["shape"];
      const VolumeShape shape{sh[0].get<int64_t>(), sh[1].get<int64_t>(), sh[2].get<int64_t>(), sh[3].get<int64_t>()};
      StatusOr<std::vector<WorkUnit>> slabs =
          config.ok() && model.ok() && volume.ok()
              ? SplitInfer(job_id, "s" + std::to_string(stage + 1), *config, *model, *volume, shape,
                           inf["output"].get<std::string>(), options_, 0, -1, FramesOf(plan))
              : StatusOr<std::vector<WorkUnit>>(InternalError("the plan is damaged"));
      if (slabs.ok()) {
        for (WorkUnit& u : *slabs) o->next_units.push_back(WithPrep("s" + std::to_string(stage + 1), std::move(u), ""));
      } else {
        o->failure = slabs.status().message();
      }
    }
  }
}

void Assimilator::Stitch(const std::string& job_id, const Json& plan, const Json& st, const std::vector<FinishedUnit>& finished,
                         StageOutcome* o) const {
  // Stitch the slabs' core slices, in Z order, into one TIFF stack.
  const std::string output = st["output"];
  const std::string name = output == "denoised" ? "denoised" : "labels";
  std::vector<std::string> names{name};
  if (output == "probabilities") names.push_back("probabilities");
  std::vector<FinishedUnit> slabs = finished;
  std::sort(slabs.begin(), slabs.end(), [](const FinishedUnit& a, const FinishedUnit& b) {
    return a.unit["slab"]["z_begin"].get<int64_t>() < b.unit["slab"]["z_begin"].get<int64_t>();
  });
  for (const std::string& n : names) {
    const std::string tmp = blobs_->root() + "/tmp/stitch-" + job_id + "-" + n + ".tif";
    Status s = [&]() -> Status {
      std::unique_ptr<TiffWriter> writer;
      int64_t total = 0;
      for (const FinishedUnit& f : slabs) {
        IDLEGRID_ASSIGN_OR_RETURN(std::string path, blobs_->PathOf(f.outputs[n]["sha256"]));
        IDLEGRID_ASSIGN_OR_RETURN(TiffInfo info, ProbeTiff(path));
        total += info.shape.z;
      }
      for (const FinishedUnit& f : slabs) {
        IDLEGRID_ASSIGN_OR_RETURN(std::string path, blobs_->PathOf(f.outputs[n]["sha256"]));
        IDLEGRID_ASSIGN_OR_RETURN(Volume part, ReadTiff(path));
        const int64_t want = f.unit["slab"]["z_end"].get<int64_t>() - f.unit["slab"]["z_begin"].get<int64_t>();
        if (part.shape().z != want) {
          return DataLossError("slab " + f.unit_id + " returned " + std::to_string(part.shape().z) +
                               " slices, not " + std::to_string(want));
        }
        if (!writer) {
          VolumeShape shape = part.shape();
          shape.z = total;
          TiffWriteOptions options;
          options.deflate = n == "labels";  // label stacks are mostly runs: a fraction of their size
          // A series' output is a hyperstack of its time points (a part of one is a stack).
          const int64_t frames = FramesOf(plan);
          if (frames > 1 && total % frames == 0 && plan["shape"][0].get<int64_t>() == total) options.frames = frames;
          IDLEGRID_ASSIGN_OR_RETURN(writer, TiffWriter::Open(tmp, shape, part.dtype(), options));
        }
        IDLEGRID_RETURN_IF_ERROR(writer->Append(part));
      }
      if (!writer) return InternalError("no slabs");
      IDLEGRID_RETURN_IF_ERROR(writer->Close());
      IDLEGRID_ASSIGN_OR_RETURN(BlobRef ref, blobs_->PutTemporary(tmp));  // moved, not copied
      o->job_outputs[n] = ref.ToJson();
      return Status::Ok();
    }();
    if (!s.ok()) {
      std::remove(tmp.c_str());
      o->failure = "cannot stitch the slabs: " + s.message();
      break;
    }
  }
  o->summary["slabs"] = slabs.size();
}

}  // namespace idlegrid::server
