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
constexpr int64_t kStitchChunkBytes = 8 << 20;

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
                                     const Json& job_outputs, const Json& job_summary,
                                     const std::vector<FinishedUnit>& finished) const {
  StageOutcome o;
  o.job_outputs = job_outputs.is_object() ? job_outputs : Json::object();
  const Json& st = plan["stages"][stage];
  if (st["type"] == "train") {
    RankChains(job_id, stage, plan, finished, &o);
  } else if (st["type"] == "review") {
    Review(job_id, plan, finished, &o);
    if (o.failure.empty() && job_summary.is_object() && job_summary.contains("ranking")) {
      Rerank(job_summary["ranking"], o.summary["review"]["agreement"], &o);
    }
  } else {
    Stitch(job_id, plan, st, finished, &o);
  }
  const bool last_stage = stage + 1 >= static_cast<int64_t>(plan["stages"].size());
  if (o.failure.empty() && !last_stage) SplitNext(job_id, stage + 1, plan, o.job_outputs, &o);
  return o;
}

void Assimilator::RankChains(const std::string& job_id, int64_t stage, const Json& plan,
                             const std::vector<FinishedUnit>& finished, StageOutcome* o) const {
  (void)job_id;
  const Json& st = plan["stages"][stage];
  Json ranking = Json::array();
  std::map<std::string, const FinishedUnit*> last_of_chain;
  for (const FinishedUnit& f : finished) last_of_chain[f.chain] = &f;  // ordered by seq
  for (const Json& c : st["chains"]) {
    const std::string chain = c["chain"];
    const FinishedUnit* f = last_of_chain.count(chain) ? last_of_chain[chain] : nullptr;
    if (f == nullptr || !f->outputs.contains("model") || !f->outputs.contains("metrics")) {
      o->failure = "chain " + chain + " finished without a model";
      return;
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
  std::stable_sort(ranking.begin(), ranking.end(), [](const Json& a, const Json& b) {
    const double sa = a["score"].is_null() ? -1e300 : a["score"].get<double>();
    const double sb = b["score"].is_null() ? -1e300 : b["score"].get<double>();
    return sa > sb;
  });
  if (st.value("role", "") == "denoiser") {  // denoise first: the segmentation comes later
    o->job_outputs["denoiser"] = ranking[0]["model"];
    o->summary["denoiser"] = ranking[0];
    return;
  }
  o->summary["ranking"] = ranking;
  o->job_outputs["model"] = ranking[0]["model"];
  o->job_outputs["metrics"] = ranking[0]["metrics"];
}

// A stage's volume: the job's input of that name, or an earlier stage's output ("denoised").
StatusOr<BlobRef> Assimilator::VolumeOf(const Json& plan, const Json& outputs, const std::string& name) const {
  const Json& inputs = plan["job"]["inputs"];
  if (inputs.contains(name)) return BlobRef::FromJson(inputs[name]);
  if (outputs.contains(name)) return BlobRef::FromJson(outputs[name]);
  return DataLossError("the plan is damaged: no volume \"" + name + "\"");
}

void Assimilator::SplitNext(const std::string& job_id, int64_t next, const Json& plan, const Json& outputs,
                            StageOutcome* o) const {
  const Json& st = plan["stages"][next];
  const std::string prefix = "s" + std::to_string(next);
  StatusOr<BlobRef> volume = VolumeOf(plan, outputs, st.value("volume", std::string("image")));
  if (!volume.ok()) {
    o->failure = volume.status().message();
    return;
  }
  const Json& sh = plan["shape"];
  const VolumeShape shape{sh[0].get<int64_t>(), sh[1].get<int64_t>(), sh[2].get<int64_t>(), sh[3].get<int64_t>()};
  if (st["type"] == "train") {
    SplitTraining(job_id, next, plan, *volume, shape, o);
    return;
  }
  // The models of the latest training stage, as training left them; the best is
  // outputs["model"] (a denoiser's stage: outputs["denoiser"]).
  int64_t trained = next - 1;
  while (trained >= 0 && plan["stages"][trained]["type"] != "train") --trained;
  if (trained < 0) {
    o->failure = "the plan is damaged: no training stage";
    return;
  }
  const Json& train = plan["stages"][trained];
  const std::string best_key = train.value("role", "") == "denoiser" ? "denoiser" : "model";
  std::vector<ReviewModel> models;
  size_t best = 0;
  for (const Json& c : train["chains"]) {
    const std::string chain = c["chain"];
    StatusOr<models::ModelConfig> config = models::ConfigFromJson(c["config"]);
    StatusOr<BlobRef> model = outputs.contains("model-" + chain) ? BlobRef::FromJson(outputs["model-" + chain])
                                                                  : StatusOr<BlobRef>(NotFoundError(chain));
    if (!config.ok() || !model.ok()) {
      o->failure = "the plan is damaged: chain " + chain + " has no model";
      return;
    }
    if (outputs.contains(best_key) && outputs[best_key]["sha256"] == model->sha256) best = models.size();
    models.push_back({"model-" + chain, *model, *config});
  }
  if (models.empty()) {
    o->failure = "the plan is damaged: no chains";
    return;
  }
  if (st["type"] == "review") {
    for (WorkUnit& u : SplitReview(job_id, prefix, models, *volume, shape, FramesOf(plan), options_)) {
      o->next_units.push_back(WithPrep(prefix, std::move(u), ""));
    }
    return;
  }
  StatusOr<std::vector<WorkUnit>> slabs = SplitInfer(job_id, prefix, models[best].config, models[best].model, *volume,
                                                     shape, st["output"].get<std::string>(), options_, 0, -1, FramesOf(plan));
  if (!slabs.ok()) {
    o->failure = slabs.status().message();
    return;
  }
  for (WorkUnit& u : *slabs) o->next_units.push_back(WithPrep(prefix, std::move(u), ""));
}

void Assimilator::SplitTraining(const std::string& job_id, int64_t next, const Json& plan, const BlobRef& volume,
                                const VolumeShape& shape, StageOutcome* o) const {
  Json stage = plan["stages"][next];
  const Json& inputs = plan["job"]["inputs"];
  NamedBlobs named;
  named["image"] = volume;
  for (const char* n : {"labels", "init"}) {
    if (!inputs.contains(n)) continue;
    StatusOr<BlobRef> ref = BlobRef::FromJson(inputs[n]);
    if (!ref.ok()) {
      o->failure = "the plan is damaged: input \"" + std::string(n) + "\"";
      return;
    }
    named[n] = *ref;
  }
  const std::string replan = stage.contains("replan") && stage["replan"].is_string() ? stage["replan"].get<std::string>() : "";
  if (!replan.empty()) {
    // Planned again from what this stage trains on (the denoised volume's intensities); the
    // plan records the chains as revised.
    StatusOr<std::string> image = blobs_->PathOf(volume.sha256);
    StatusOr<std::string> labels = named.count("labels") ? blobs_->PathOf(named["labels"].sha256)
                                                         : StatusOr<std::string>(std::string());
    StatusOr<Json> chains = image.ok() && labels.ok()
                                ? ChainsFor(*image, *labels, stage["chains"], replan == "strategy",
                                            plan["job"].value("kind", "") == "sweep", options_)
                                : StatusOr<Json>(image.ok() ? labels.status() : image.status());
    if (!chains.ok()) {
      o->failure = "cannot plan the candidates for the denoised volume: " + chains.status().message();
      return;
    }
    stage["chains"] = *chains;
    stage.erase("replan");
    o->plan = plan;
    o->plan["stages"][next] = stage;
  }
  StatusOr<std::vector<PlannedUnit>> units = SplitTrainStage(job_id, stage, named, shape, FramesOf(plan), options_);
  if (!units.ok()) {
    o->failure = units.status().message();
    return;
  }
  o->next_units = std::move(*units);
}

StatusOr<BlobRef> Assimilator::StitchOutput(const std::string& job_id, const std::string& name,
                                            const std::vector<FinishedUnit>& units, int64_t frames, int64_t series_depth,
                                            const std::function<Status(const FinishedUnit&, int64_t)>& check) const {
  const std::string tmp = blobs_->root() + "/tmp/stitch-" + job_id + "-" + name + ".tif";
  Status s = [&]() -> Status {
    std::unique_ptr<TiffWriter> writer;
    int64_t total = 0;
    for (const FinishedUnit& f : units) {
      if (!f.outputs.contains(name)) return DataLossError("unit " + f.unit_id + " has no output \"" + name + "\"");
      IDLEGRID_ASSIGN_OR_RETURN(std::string path, blobs_->PathOf(f.outputs[name]["sha256"]));
      IDLEGRID_ASSIGN_OR_RETURN(TiffInfo info, ProbeTiff(path));
      total += info.shape.z;
    }
    for (const FinishedUnit& f : units) {
      IDLEGRID_ASSIGN_OR_RETURN(std::string path, blobs_->PathOf(f.outputs[name]["sha256"]));
      IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffStackReader> part, TiffStackReader::Open(path));
      const VolumeShape& ps = part->info().shape;
      IDLEGRID_RETURN_IF_ERROR(check(f, ps.z));
      if (!writer) {
        VolumeShape shape = ps;
        shape.z = total;
        TiffWriteOptions options;
        options.deflate = name != "denoised" && name != "probabilities";  // labels and maps: mostly runs
        // A series' output is a hyperstack of its time points (a part of one is a stack).
        if (frames > 1 && total % frames == 0 && series_depth == total) options.frames = frames;
        IDLEGRID_ASSIGN_OR_RETURN(writer, TiffWriter::Open(tmp, shape, part->info().dtype, options));
      }
      // A few slices at a time: the server never holds a slab.
      const int64_t plane = std::max<int64_t>(1, ps.y * ps.x * ps.c * static_cast<int64_t>(DTypeSize(part->info().dtype)));
      const int64_t step = std::max<int64_t>(1, kStitchChunkBytes / plane);
      for (int64_t z = 0; z < ps.z; z += step) {
        IDLEGRID_ASSIGN_OR_RETURN(Volume chunk, part->ReadSlices(z, std::min(ps.z, z + step)));
        IDLEGRID_RETURN_IF_ERROR(writer->Append(chunk));
      }
    }
    if (!writer) return InternalError("nothing to stitch");
    return writer->Close();
  }();
  if (!s.ok()) {
    std::remove(tmp.c_str());
    return s;
  }
  return blobs_->PutTemporary(tmp);  // moved, not copied
}

void Assimilator::Stitch(const std::string& job_id, const Json& plan, const Json& st, const std::vector<FinishedUnit>& finished,
                         StageOutcome* o) const {
  // Stitch the slabs' core slices, in Z order, into one TIFF stack.
  const std::string output = st["output"];
  std::vector<std::string> names{output == "denoised" ? "denoised" : "labels"};
  if (output == "probabilities") names.push_back("probabilities");
  std::vector<FinishedUnit> slabs = finished;
  std::sort(slabs.begin(), slabs.end(), [](const FinishedUnit& a, const FinishedUnit& b) {
    return a.unit["slab"]["z_begin"].get<int64_t>() < b.unit["slab"]["z_begin"].get<int64_t>();
  });
  auto check = [](const FinishedUnit& f, int64_t slices) {
    const int64_t want = f.unit["slab"]["z_end"].get<int64_t>() - f.unit["slab"]["z_begin"].get<int64_t>();
    if (slices == want) return Status::Ok();
    return DataLossError("slab " + f.unit_id + " returned " + std::to_string(slices) + " slices, not " + std::to_string(want));
  };
  for (const std::string& n : names) {
    StatusOr<BlobRef> ref = StitchOutput(job_id, n, slabs, FramesOf(plan), plan["shape"][0].get<int64_t>(), check);
    if (!ref.ok()) {
      o->failure = "cannot stitch the slabs: " + ref.status().message();
      return;
    }
    o->job_outputs[n] = ref->ToJson();
  }
  o->summary["slabs"] = slabs.size();
}

void Assimilator::Review(const std::string& job_id, const Json& plan, const std::vector<FinishedUnit>& finished,
                         StageOutcome* o) const {
  std::vector<FinishedUnit> units = finished;
  std::sort(units.begin(), units.end(), [](const FinishedUnit& a, const FinishedUnit& b) {
    return a.unit["slices"][0].get<int64_t>() < b.unit["slices"][0].get<int64_t>();
  });
  Json slices = Json::array();
  std::map<std::string, double> agreement;
  size_t scored = 0;
  for (const FinishedUnit& f : units) {
    StatusOr<std::string> text = f.outputs.contains("review") ? blobs_->Read(f.outputs["review"]["sha256"], kMaxMetricsBytes)
                                                              : StatusOr<std::string>(NotFoundError("no review"));
    StatusOr<Json> r = text.ok() ? ParseJson(*text) : StatusOr<Json>(text.status());
    // What the unit was asked, in its order, each with finite scores in [0, 1].
    const Json& asked = f.unit["slices"];
    bool ok = r.ok() && r->is_object() && r->contains("slices") && (*r)["slices"].is_array() &&
              (*r)["slices"].size() == asked.size() && r->contains("agreement") && (*r)["agreement"].is_object();
    for (size_t i = 0; ok && i < asked.size(); ++i) {
      const Json& e = (*r)["slices"][i];
      ok = e.is_object() && e.value("z", Json()) == asked[i];
      for (const char* k : {"entropy", "disagreement", "uncertain_fraction"}) {
        ok = ok && e.contains(k) && e[k].is_number() && e[k].get<double>() >= 0 && e[k].get<double>() <= 1;
      }
      if (ok) slices.push_back({{"z", asked[i]}, {"entropy", e["entropy"]}, {"disagreement", e["disagreement"]},
                                {"uncertain_fraction", e["uncertain_fraction"]}});
    }
    if (!ok) {
      o->failure = "review unit " + f.unit_id + " returned no valid scores";
      return;
    }
    for (auto it = (*r)["agreement"].begin(); it != (*r)["agreement"].end(); ++it) {
      if (it.value().is_number()) agreement[it.key()] += it.value().get<double>() * static_cast<double>(asked.size());
    }
    scored += asked.size();
  }
  auto check = [](const FinishedUnit& f, int64_t n) {
    if (n == static_cast<int64_t>(f.unit["slices"].size())) return Status::Ok();
    return DataLossError("review unit " + f.unit_id + " returned " + std::to_string(n) + " maps, not " +
                         std::to_string(f.unit["slices"].size()));
  };
  StatusOr<BlobRef> map = StitchOutput(job_id, "uncertainty", units, 1, 0, check);  // a stack of the sampled slices
  if (!map.ok()) {
    o->failure = "cannot stitch the uncertainty maps: " + map.status().message();
    return;
  }
  o->job_outputs["uncertainty"] = map->ToJson();
  // The slices the user should look at first: most uncertain first.
  std::vector<size_t> order(slices.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return slices[a]["entropy"].get<double>() > slices[b]["entropy"].get<double>();
  });
  Json where = Json::array();
  for (size_t i : order) where.push_back(slices[i]["z"]);
  Json agree = Json::object();
  for (const auto& [name, sum] : agreement) {
    agree[name.rfind("model-", 0) == 0 ? name.substr(6) : name] = sum / static_cast<double>(std::max<size_t>(scored, 1));
  }
  const int64_t frames = FramesOf(plan);
  o->summary["review"] = {{"slices", slices}, {"where", where}, {"agreement", agree}, {"frames", frames},
                          {"depth", plan["shape"][0].get<int64_t>() / frames}};
}

void Assimilator::Rerank(const Json& ranking, const Json& agreement, StageOutcome* o) const {
  if (!ranking.is_array() || ranking.empty()) return;
  auto score = [](const Json& r) { return r["score"].is_number() ? r["score"].get<double>() : -1e300; };
  const double best = score(ranking[0]);
  Json revised = ranking;
  for (Json& r : revised) {
    const std::string chain = r.value("chain", std::string());
    if (agreement.contains(chain)) r["agreement"] = agreement[chain];
    const bool tied = best > -1e299 && score(r) >= best - kTiedDice;
    r["why"] = !tied ? "validation Dice more than " + std::to_string(kTiedDice).substr(0, 4) + " below the best"
               : agreement.contains(chain) ? "validation within " + std::to_string(kTiedDice).substr(0, 4) +
                                                 " of the best: ranked by agreement with the other candidates on the reviewed slices"
                                           : "validation within " + std::to_string(kTiedDice).substr(0, 4) + " of the best";
  }
  // Tied candidates first, by agreement (then validation); the rest as they were.
  std::stable_sort(revised.begin(), revised.end(), [&](const Json& a, const Json& b) {
    const bool ta = score(a) >= best - kTiedDice, tb = score(b) >= best - kTiedDice;
    if (ta != tb) return ta;
    if (!ta) return false;
    const double aa = a.value("agreement", 0.0), ab = b.value("agreement", 0.0);
    return aa != ab ? aa > ab : score(a) > score(b);
  });
  o->summary["ranking"] = revised;
  o->job_outputs["model"] = revised[0]["model"];
  o->job_outputs["metrics"] = revised[0]["metrics"];
}

}  // namespace idlegrid::server
