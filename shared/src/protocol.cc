#include "idlegrid/shared/protocol.h"

#include <cmath>
#include <limits>

namespace idlegrid {
namespace {

constexpr int64_t kMaxTime = int64_t{1} << 40;  // far beyond any real Unix time
constexpr int64_t kMaxSeed = (int64_t{1} << 53) - 1;  // exact in every JSON reader
constexpr size_t kMaxShortText = 256;
constexpr size_t kMaxMessageText = 4096;
constexpr size_t kMaxMetrics = 64;

// A name -> BlobRef object.
NamedBlobs ReadNamedBlobs(JsonReader& r, const std::string& key) {
  NamedBlobs out;
  const Json& obj = r.Object(key);
  if (obj.size() > kMaxNamedBlobs) {
    r.Fail(key, "more than " + std::to_string(kMaxNamedBlobs) + " entries");
    return out;
  }
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!IsValidName(it.key())) {
      r.Fail(key, "invalid name \"" + it.key().substr(0, 64) +
                      "\" (1-64 characters of [a-z0-9_.-])");
      return out;
    }
    StatusOr<BlobRef> ref = BlobRef::FromJson(it.value(), r.Path(key) + "." + it.key());
    if (!ref.ok()) {
      r.Fail(key, ref.status().message());
      return out;
    }
    out.emplace(it.key(), std::move(*ref));
  }
  return out;
}

Json NamedBlobsToJson(const NamedBlobs& blobs) {
  Json j = Json::object();
  for (const auto& [name, ref] : blobs) j[name] = ref.ToJson();
  return j;
}

std::map<std::string, double> ReadMetrics(JsonReader& r, const std::string& key) {
  std::map<std::string, double> out;
  const Json& obj = r.Object(key);
  if (obj.size() > kMaxMetrics) {
    r.Fail(key, "more than " + std::to_string(kMaxMetrics) + " entries");
    return out;
  }
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!IsValidName(it.key())) {
      r.Fail(key, "invalid metric name \"" + it.key().substr(0, 64) + "\"");
      return out;
    }
    if (!it.value().is_number()) {
      r.Fail(key, "metric \"" + it.key() + "\" must be a number");
      return out;
    }
    out[it.key()] = it.value().get<double>();
  }
  return out;
}

Json MetricsToJson(const std::map<std::string, double>& metrics) {
  Json j = Json::object();
  for (const auto& [name, v] : metrics) j[name] = v;
  return j;
}

// A model configuration: any JSON object (data, not code) up to kMaxConfigBytes.
Json ReadConfig(JsonReader& r, const std::string& key) {
  const Json& obj = r.Object(key);
  StatusOr<std::string> text = CanonicalJson(obj);
  if (!text.ok()) {
    r.Fail(key, text.status().message());
    return Json::object();
  }
  if (text->size() > kMaxConfigBytes) {
    r.Fail(key, "configuration of " + std::to_string(text->size()) +
                    " bytes exceeds the limit of " + std::to_string(kMaxConfigBytes));
    return Json::object();
  }
  return obj;
}

template <typename T>
StatusOr<T> Finished(JsonReader& r, T value) {
  Status st = r.Finish();
  if (!st.ok()) return st;
  return value;
}

// Reads the optional blob reference `key` into *out (a checkpoint exists only once one has
// been uploaded); an earlier error in `r` is returned first.
Status ReadOptionalBlob(JsonReader& r, const std::string& key, std::optional<BlobRef>* out) {
  IDLEGRID_RETURN_IF_ERROR(r.status());
  if (!r.Has(key)) return Status::Ok();
  IDLEGRID_ASSIGN_OR_RETURN(BlobRef ref, BlobRef::FromJson(r.Object(key), r.Path(key)));
  *out = std::move(ref);
  return Status::Ok();
}

}  // namespace

void ReadSchema(JsonReader& r) {
  int64_t v = r.Int("schema", 0, std::numeric_limits<int32_t>::max());
  if (v != kSchemaVersion) {
    r.Fail("schema", "unsupported schema version " + std::to_string(v) + " (this build speaks " +
                         std::to_string(kSchemaVersion) + ")");
  }
}

// BlobRef ------------------------------------------------------------------

Json BlobRef::ToJson() const { return Json{{"sha256", sha256}, {"size", size}, {"url", url}}; }

StatusOr<BlobRef> BlobRef::FromJson(const Json& j, const std::string& where) {
  JsonReader r(j, where);
  BlobRef b;
  b.sha256 = r.Sha256Hex("sha256");
  b.size = r.Int("size", 0, kMaxBlobBytes);
  b.url = r.String("url", kMaxUrlLength, /*allow_empty=*/true);
  return Finished(r, std::move(b));
}

// NodeInfo -----------------------------------------------------------------

Json NodeInfo::ToJson() const {
  Json g = Json::array();
  for (const GpuInfo& gpu : gpus) g.push_back({{"name", gpu.name}, {"memory_bytes", gpu.memory_bytes}});
  return Json{{"schema", kSchemaVersion}, {"hostname", hostname}, {"os", os},
              {"version", version}, {"cores", cores}, {"ram_bytes", ram_bytes}, {"gpus", g}};
}

StatusOr<NodeInfo> NodeInfo::FromJson(const Json& j, const std::string& where) {
  JsonReader r(j, where);
  NodeInfo n;
  ReadSchema(r);
  n.hostname = r.String("hostname", 255);
  n.os = r.String("os", kMaxShortText);
  n.version = r.String("version", 64);
  n.cores = r.Int("cores", 1, 65536);
  n.ram_bytes = r.Int("ram_bytes", 0, int64_t{1} << 52);
  const Json& gpus = r.Array("gpus", 64);
  for (size_t i = 0; i < gpus.size(); ++i) {
    JsonReader g(gpus[i], r.Path("gpus") + "[" + std::to_string(i) + "]");
    GpuInfo info;
    info.name = g.String("name", kMaxShortText);
    info.memory_bytes = g.Int("memory_bytes", 0, int64_t{1} << 50);
    Status st = g.Finish();
    if (!st.ok()) return st;
    n.gpus.push_back(std::move(info));
  }
  return Finished(r, std::move(n));
}

bool NodeInfo::operator==(const NodeInfo& o) const {
  return hostname == o.hostname && os == o.os && version == o.version && cores == o.cores &&
         ram_bytes == o.ram_bytes && gpus == o.gpus;
}

// Job ----------------------------------------------------------------------

const char* JobKindName(JobKind kind) {
  switch (kind) {
    case JobKind::kTrain: return "train";
    case JobKind::kSweep: return "sweep";
    case JobKind::kInfer: return "infer";
    case JobKind::kDenoise: return "denoise";
  }
  return "?";
}

static JobKind ParseJobKind(const std::string& s) {
  if (s == "sweep") return JobKind::kSweep;
  if (s == "infer") return JobKind::kInfer;
  if (s == "denoise") return JobKind::kDenoise;
  return JobKind::kTrain;
}

Json Job::ToJson() const {
  return Json{{"schema", kSchemaVersion}, {"job_id", job_id}, {"kind", JobKindName(kind)},
              {"name", name}, {"submitted_at", submitted_at},
              {"inputs", NamedBlobsToJson(inputs)}, {"config", config}};
}

StatusOr<Job> Job::FromJson(const Json& j, const std::string& where) {
  JsonReader r(j, where);
  Job job;
  ReadSchema(r);
  job.job_id = r.Id("job_id");
  job.kind = ParseJobKind(r.Enum("kind", {"train", "sweep", "infer", "denoise"}));
  job.name = r.String("name", kMaxShortText, /*allow_empty=*/true);
  job.submitted_at = r.Int("submitted_at", 0, kMaxTime);
  job.inputs = ReadNamedBlobs(r, "inputs");
  job.config = ReadConfig(r, "config");
  return Finished(r, std::move(job));
}

bool Job::operator==(const Job& o) const {
  return job_id == o.job_id && kind == o.kind && name == o.name &&
         submitted_at == o.submitted_at && inputs == o.inputs && config == o.config;
}

// WorkUnit -----------------------------------------------------------------

const char* UnitKindName(UnitKind kind) {
  switch (kind) {
    case UnitKind::kTrainEpochs: return "train_epochs";
    case UnitKind::kInferSlab: return "infer_slab";
    case UnitKind::kReviewSlices: return "review_slices";
  }
  return "?";
}

Json WorkUnit::ToJson() const {
  Json j{{"schema", kSchemaVersion},
         {"unit_id", unit_id},
         {"job_id", job_id},
         {"kind", UnitKindName(kind)},
         {"config", config},
         {"inputs", NamedBlobsToJson(inputs)},
         {"threads", threads},
         {"checkpoint_every_s", checkpoint_every_s},
         {"min_memory_bytes", min_memory_bytes},
         {"needs_gpu", needs_gpu}};
  if (epochs) {
    j["seed"] = seed;
    j["epochs"] = Json{{"begin", epochs->begin}, {"end", epochs->end}};
  }
  if (slab) {
    j["slab"] = Json{{"z_begin", slab->z_begin}, {"z_end", slab->z_end},
                     {"halo_before", slab->halo_before}, {"halo_after", slab->halo_after}};
  }
  if (kind == UnitKind::kReviewSlices) j["slices"] = review_slices;
  if (region) j["region"] = SliceRegionToJson(*region);
  return j;
}

StatusOr<WorkUnit> WorkUnit::FromJson(const Json& j, const std::string& where) {
  JsonReader r(j, where);
  WorkUnit u;
  ReadSchema(r);
  u.unit_id = r.Id("unit_id");
  u.job_id = r.Id("job_id");
  std::string kind = r.Enum("kind", {"train_epochs", "infer_slab", "review_slices"});
  u.kind = kind == "infer_slab"      ? UnitKind::kInferSlab
           : kind == "review_slices" ? UnitKind::kReviewSlices
                                     : UnitKind::kTrainEpochs;
  u.config = ReadConfig(r, "config");
  u.inputs = ReadNamedBlobs(r, "inputs");
  u.threads = r.Int("threads", 1, 1024);
  u.checkpoint_every_s = r.Int("checkpoint_every_s", 1, 86400);
  u.min_memory_bytes = r.Int("min_memory_bytes", 0, int64_t{1} << 50);
  u.needs_gpu = r.Bool("needs_gpu");
  IDLEGRID_RETURN_IF_ERROR(r.status());  // before nested readers, so the first error wins
  if (u.kind == UnitKind::kTrainEpochs) {
    u.seed = r.Int("seed", 0, kMaxSeed);
    const Json& epochs = r.Object("epochs");
    IDLEGRID_RETURN_IF_ERROR(r.status());
    JsonReader e(epochs, r.Path("epochs"));
    EpochRange range;
    range.begin = e.Int("begin", 0, kMaxEpochs - 1);
    range.end = e.Int("end", 1, kMaxEpochs);
    if (range.end <= range.begin) e.Fail("end", "must be greater than begin");
    Status st = e.Finish();
    if (!st.ok()) return st;
    u.epochs = range;
  } else if (u.kind == UnitKind::kReviewSlices) {
    const Json& slices = r.Array("slices", kMaxReviewSlices);
    IDLEGRID_RETURN_IF_ERROR(r.status());
    for (size_t i = 0; i < slices.size(); ++i) {
      if (!slices[i].is_number_integer() || slices[i].get<int64_t>() < 0 ||
          (i > 0 && slices[i].get<int64_t>() <= u.review_slices.back())) {
        return InvalidArgumentError(r.Path("slices") + "[" + std::to_string(i) + "] must be a slice after the one before");
      }
      u.review_slices.push_back(slices[i].get<int64_t>());
    }
    if (u.review_slices.empty()) return InvalidArgumentError(r.Path("slices") + " must name at least one slice");
    if (!r.Has("region")) return InvalidArgumentError(r.Path("region") + " is required for review_slices");
  } else {
    const Json& slab = r.Object("slab");
    IDLEGRID_RETURN_IF_ERROR(r.status());
    JsonReader s(slab, r.Path("slab"));
    SlabRange range;
    range.z_begin = s.Int("z_begin", 0, kMaxSlices - 1);
    range.z_end = s.Int("z_end", 1, kMaxSlices);
    range.halo_before = s.Int("halo_before", 0, range.z_begin);
    range.halo_after = s.Int("halo_after", 0, 4096);
    if (range.z_end <= range.z_begin) s.Fail("z_end", "must be greater than z_begin");
    Status st = s.Finish();
    if (!st.ok()) return st;
    u.slab = range;
  }
  if (r.Has("region")) {
    const Json& region = r.Object("region");
    IDLEGRID_RETURN_IF_ERROR(r.status());
    IDLEGRID_ASSIGN_OR_RETURN(u.region, SliceRegionFromJson(region, r.Path("region")));
    if (u.slab && (u.region->runs.size() != 1 || u.region->runs[0].first != u.slab->read_begin() ||
                   u.region->runs[0].second != u.slab->read_end())) {
      return InvalidArgumentError(r.Path("region") + " must be the slab's slices [" +
                                  std::to_string(u.slab->read_begin()) + ", " +
                                  std::to_string(u.slab->read_end()) + ")");
    }
    for (int64_t z : u.review_slices) {
      if (u.region->Local(z) < 0) {
        return InvalidArgumentError(r.Path("slices") + ": slice " + std::to_string(z) + " is outside the region");
      }
    }
  }
  return Finished(r, std::move(u));
}

bool WorkUnit::operator==(const WorkUnit& o) const {
  return unit_id == o.unit_id && job_id == o.job_id && kind == o.kind && config == o.config &&
         inputs == o.inputs && threads == o.threads &&
         checkpoint_every_s == o.checkpoint_every_s && min_memory_bytes == o.min_memory_bytes &&
         needs_gpu == o.needs_gpu && seed == o.seed && epochs == o.epochs && slab == o.slab &&
         review_slices == o.review_slices && region == o.region;
}

// SliceRegion --------------------------------------------------------------

Json SliceRegionToJson(const SliceRegion& region) {
  Json runs = Json::array();
  for (const auto& [b, e] : region.runs) runs.push_back(Json::array({b, e}));
  Json j{{"depth", region.depth}, {"runs", runs}};
  if (region.frames > 1) j["frames"] = region.frames;
  return j;
}

StatusOr<SliceRegion> SliceRegionFromJson(const Json& j, const std::string& where) {
  JsonReader r(j, where);
  SliceRegion region;
  region.depth = r.Int("depth", 1, kMaxVolumeExtent);
  if (r.Has("frames")) region.frames = r.Int("frames", 1, kMaxVolumeExtent);
  const Json& runs = r.Array("runs", kMaxRegionRuns);
  IDLEGRID_RETURN_IF_ERROR(r.Finish());
  for (size_t i = 0; i < runs.size(); ++i) {
    const Json& run = runs[i];
    if (!run.is_array() || run.size() != 2 || !run[0].is_number_integer() || !run[1].is_number_integer()) {
      return InvalidArgumentError(where + ".runs[" + std::to_string(i) + "] must be [first, end) slices");
    }
    region.runs.emplace_back(run[0].get<int64_t>(), run[1].get<int64_t>());
  }
  IDLEGRID_RETURN_IF_ERROR(region.Validate(where));
  return region;
}

// Lease --------------------------------------------------------------------

Json Lease::ToJson() const {
  return Json{{"schema", kSchemaVersion}, {"lease_id", lease_id}, {"unit_id", unit_id},
              {"node_id", node_id}, {"issued_at", issued_at}, {"deadline", deadline}};
}

StatusOr<Lease> Lease::FromJson(const Json& j, const std::string& where) {
  JsonReader r(j, where);
  Lease l;
  ReadSchema(r);
  l.lease_id = r.Id("lease_id");
  l.unit_id = r.Id("unit_id");
  l.node_id = r.Id("node_id");
  l.issued_at = r.Int("issued_at", 0, kMaxTime);
  l.deadline = r.Int("deadline", 0, kMaxTime);
  if (l.deadline < l.issued_at) r.Fail("deadline", "must not be before issued_at");
  return Finished(r, std::move(l));
}

bool Lease::operator==(const Lease& o) const {
  return lease_id == o.lease_id && unit_id == o.unit_id && node_id == o.node_id &&
         issued_at == o.issued_at && deadline == o.deadline;
}

// Heartbeat ----------------------------------------------------------------

Json Heartbeat::ToJson() const {
  Json j{{"schema", kSchemaVersion}, {"lease_id", lease_id}, {"node_id", node_id},
         {"progress", progress}, {"epoch", epoch}, {"message", message},
         {"metrics", MetricsToJson(metrics)}};
  if (checkpoint) j["checkpoint"] = checkpoint->ToJson();
  return j;
}

StatusOr<Heartbeat> Heartbeat::FromJson(const Json& j, const std::string& where) {
  JsonReader r(j, where);
  Heartbeat h;
  ReadSchema(r);
  h.lease_id = r.Id("lease_id");
  h.node_id = r.Id("node_id");
  h.progress = r.Number("progress", 0.0, 1.0);
  h.epoch = r.Int("epoch", 0, kMaxEpochs);
  h.message = r.String("message", kMaxMessageText, /*allow_empty=*/true);
  h.metrics = ReadMetrics(r, "metrics");
  IDLEGRID_RETURN_IF_ERROR(ReadOptionalBlob(r, "checkpoint", &h.checkpoint));
  return Finished(r, std::move(h));
}

bool Heartbeat::operator==(const Heartbeat& o) const {
  return lease_id == o.lease_id && node_id == o.node_id && progress == o.progress &&
         epoch == o.epoch && message == o.message && metrics == o.metrics &&
         checkpoint == o.checkpoint;
}

// AbortRequest -------------------------------------------------------------

Json AbortRequest::ToJson() const {
  Json j{{"schema", kSchemaVersion}, {"reason", reason}, {"failed", failed}};
  if (checkpoint) j["checkpoint"] = checkpoint->ToJson();
  return j;
}

StatusOr<AbortRequest> AbortRequest::FromJson(const Json& j, const std::string& where) {
  JsonReader r(j, where);
  AbortRequest a;
  ReadSchema(r);
  a.reason = r.String("reason", kMaxMessageText, /*allow_empty=*/true);
  if (r.Has("failed")) a.failed = r.Bool("failed");
  IDLEGRID_RETURN_IF_ERROR(ReadOptionalBlob(r, "checkpoint", &a.checkpoint));
  return Finished(r, std::move(a));
}

Json HeartbeatReply::ToJson() const {
  return Json{{"schema", kSchemaVersion},
              {"action", action == HeartbeatAction::kAbort ? "abort" : "continue"},
              {"deadline", deadline},
              {"reason", reason}};
}

StatusOr<HeartbeatReply> HeartbeatReply::FromJson(const Json& j, const std::string& where) {
  JsonReader r(j, where);
  HeartbeatReply h;
  ReadSchema(r);
  h.action = r.Enum("action", {"continue", "abort"}) == "abort" ? HeartbeatAction::kAbort
                                                                : HeartbeatAction::kContinue;
  h.deadline = r.Int("deadline", 0, kMaxTime);
  h.reason = r.String("reason", kMaxMessageText, /*allow_empty=*/true);
  return Finished(r, std::move(h));
}

bool HeartbeatReply::operator==(const HeartbeatReply& o) const {
  return action == o.action && deadline == o.deadline && reason == o.reason;
}

// Result -------------------------------------------------------------------

Json Result::ToJson() const {
  return Json{{"schema", kSchemaVersion}, {"lease_id", lease_id}, {"unit_id", unit_id},
              {"node_id", node_id}, {"outputs", NamedBlobsToJson(outputs)},
              {"metrics", MetricsToJson(metrics)}, {"epochs_done", epochs_done},
              {"elapsed_s", elapsed_s}};
}

StatusOr<Result> Result::FromJson(const Json& j, const std::string& where) {
  JsonReader r(j, where);
  Result res;
  ReadSchema(r);
  res.lease_id = r.Id("lease_id");
  res.unit_id = r.Id("unit_id");
  res.node_id = r.Id("node_id");
  res.outputs = ReadNamedBlobs(r, "outputs");
  res.metrics = ReadMetrics(r, "metrics");
  res.epochs_done = r.Int("epochs_done", 0, kMaxEpochs);
  res.elapsed_s = r.Number("elapsed_s", 0.0, 1e9);
  return Finished(r, std::move(res));
}

bool Result::operator==(const Result& o) const {
  return lease_id == o.lease_id && unit_id == o.unit_id && node_id == o.node_id &&
         outputs == o.outputs && metrics == o.metrics && epochs_done == o.epochs_done &&
         elapsed_s == o.elapsed_s;
}

}  // namespace idlegrid
