#include "idlegrid/client/wizard.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include "idlegrid/models/config_json.h"
#include "idlegrid/models/strategy.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/hdf5_io.h"
#include "idlegrid/shared/tiff_io.h"

namespace idlegrid::client {

StatusOr<std::unique_ptr<Wizard>> Wizard::Create(WizardOptions options) {
  std::unique_ptr<Wizard> w(new Wizard());
  w->o_ = std::move(options);
  if (w->o_.session_dir.empty()) return InvalidArgumentError("a session folder is needed");
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(w->o_.session_dir, 0700));
  if (w->o_.local_grid) {
    server::ServerOptions so;
    so.queue.unit_threads = w->o_.local_threads;
    // The private grid lives with the session: its jobs and models are there tomorrow.
    Wizard* raw = w.get();
    IDLEGRID_ASSIGN_OR_RETURN(w->local_, LocalGrid::Start(w->o_.session_dir + "/grid", w->o_.bin, so, false,
                                                          [raw](int64_t done, int64_t total) { raw->Progress(done, total); }));
    for (int64_t i = 0; i < w->o_.local_nodes; ++i) {
      IDLEGRID_RETURN_IF_ERROR(w->local_->AddNode(w->o_.local_threads, {"--heartbeat", "2"}).status());
    }
    w->api_ = &w->local_->admin();
    w->session_.local_grid = true;
  } else {
    HttpClientOptions h;
    h.base_url = w->o_.server;
    h.pinned_cert_sha256 = w->o_.fingerprint;
    h.bearer_token = w->o_.token;
    h.connect_timeout_ms = 5000;  // a person is waiting: say "unreachable" soon
    h.max_attempts = 2;
    Wizard* raw = w.get();  // owns the client: outlives every call
    h.on_progress = [raw](int64_t done, int64_t total) { raw->Progress(done, total); };
    IDLEGRID_ASSIGN_OR_RETURN(w->remote_, ApiClient::Create(h));
    // Fail now, with the server's words, rather than at the first job.
    IDLEGRID_RETURN_IF_ERROR(w->remote_->Stats().status());
    w->api_ = w->remote_.get();
    w->session_.local_grid = false;
    w->session_.server = w->o_.server;
    w->session_.fingerprint = w->o_.fingerprint;
  }
  return w;
}

Wizard::~Wizard() = default;

StatusOr<std::string> Wizard::Stage(const std::string& spec, const std::function<void(int64_t, int64_t)>& progress) {
  const VolumePath source = ParseVolumePath(spec);
  if (!source.hdf5) return spec;
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(o_.session_dir, 0700));
  const std::string staged = StagedPath(), tmp = staged + ".tmp";
  Status converted = ConvertHdf5ToTiff(source, tmp, progress, cancel_);
  if (!converted.ok()) {
    std::remove(tmp.c_str());
    return converted;
  }
  if (std::rename(tmp.c_str(), staged.c_str()) != 0) return ErrnoError("rename " + tmp, errno);
  return staged;
}

Status Wizard::Open(const std::string& spec) {
  // The grid moves TIFF stacks: an HDF5 dataset becomes one in the session folder (streamed).
  IDLEGRID_ASSIGN_OR_RETURN(std::string image_path, Stage(spec));
  if (image_path == StagedPath()) {
    const std::string kept = o_.session_dir + "/image.tif";
    if (std::rename(image_path.c_str(), kept.c_str()) != 0) return ErrnoError("rename " + image_path, errno);
    image_path = kept;
  }
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<LazyStack> stack, LazyStack::Open(image_path));
  stack_ = std::move(stack);
  annotation_ = std::make_unique<Annotation>(stack_->shape());
  saved_revision_ = ~uint64_t{0};
  session_.image_path = image_path;
  session_.jobs.clear();
  session_.chosen_model.clear();
  image_blob_ = BlobRef{};
  return Save();
}

Status Wizard::Reopen() {
  IDLEGRID_ASSIGN_OR_RETURN(LoadedSession loaded, LoadSession(o_.session_dir));
  StatusOr<std::unique_ptr<LazyStack>> stack = LazyStack::Open(loaded.session.image_path);
  if (!stack.ok()) return NotFoundError("the session's volume " + loaded.session.image_path + " cannot be read");
  const VolumeShape& is = (*stack)->shape();
  if (is.z != loaded.annotation.shape().z || is.y != loaded.annotation.shape().y || is.x != loaded.annotation.shape().x) {
    return FailedPreconditionError("the session's labels do not fit " + loaded.session.image_path);
  }
  stack_ = std::move(*stack);
  const bool local = session_.local_grid;
  session_ = loaded.session;
  session_.local_grid = local;
  annotation_ = std::make_unique<Annotation>(std::move(loaded.annotation));
  saved_revision_ = annotation_->revision();
  image_blob_ = BlobRef{};
  return Status::Ok();
}

Status Wizard::Save() {
  if (!annotation_) return FailedPreconditionError("no volume is open");
  std::lock_guard<std::mutex> lock(save_mu_);
  const uint64_t revision = annotation_->revision();
  IDLEGRID_RETURN_IF_ERROR(SaveSession(o_.session_dir, session_, *annotation_, revision != saved_revision_));
  saved_revision_ = revision;
  return Status::Ok();
}

void Wizard::Track(const std::string& job_id, const std::string& purpose) {
  {
    std::lock_guard<std::mutex> lock(save_mu_);  // an autosave may be reading the session
    session_.jobs.push_back({job_id, purpose});
  }
  Save().IgnoreError();
}

void Wizard::Progress(int64_t done, int64_t total) {
  if (!o_.on_transfer) return;
  std::string what;
  {
    std::lock_guard<std::mutex> lock(transfer_mu_);
    const auto now = std::chrono::steady_clock::now();
    if (transfer_what_.empty() || (now - last_progress_ < std::chrono::milliseconds(250) && done < total)) return;
    last_progress_ = now;
    what = transfer_what_;
  }
  o_.on_transfer(what, done, total);
}

StatusOr<BlobRef> Wizard::Upload(const std::string& path, const std::string& what) {
  {
    std::lock_guard<std::mutex> lock(transfer_mu_);
    transfer_what_ = what;
  }
  StatusOr<BlobRef> ref = api_->UploadFile(path);
  std::lock_guard<std::mutex> lock(transfer_mu_);
  transfer_what_.clear();
  return ref;
}

Status Wizard::EnsureImageUploaded() {
  if (!image_blob_.sha256.empty()) return Status::Ok();
  IDLEGRID_ASSIGN_OR_RETURN(image_blob_, Upload(session_.image_path, "the volume"));
  return Status::Ok();
}

StatusOr<BlobRef> Wizard::UploadLabels() {
  IDLEGRID_RETURN_IF_ERROR(Save());
  IDLEGRID_RETURN_IF_ERROR(EnsureImageUploaded());
  return Upload(o_.session_dir + "/labels.tif", "the labels");
}

// The strategy's fingerprint from a bounded sample of the image's slices (as the server
// plans): the wizard never reads the whole volume for it.
StatusOr<models::DataFingerprint> Wizard::Fingerprint(const Volume* labels) {
  if (!stack_) return FailedPreconditionError("no volume is open");
  models::Resources r;
  r.threads = o_.local_threads;
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffStackReader> reader, TiffStackReader::Open(session_.image_path));
  const TiffInfo info = reader->info();
  models::FingerprintBuilder b(info.shape, info.dtype, models::SampleSlices(info.shape, info.dtype, models::kFingerprintSampleBytes));
  const int64_t slice = std::max<int64_t>(1, info.shape.y * info.shape.x * info.shape.c *
                                                 static_cast<int64_t>(DTypeSize(info.dtype)));
  IDLEGRID_RETURN_IF_ERROR(b.AddSampledImage([&](int64_t z0, int64_t z1) { return reader->ReadSlices(z0, z1); },
                                             std::max<int64_t>(1, (int64_t{64} << 20) / slice)));
  if (labels != nullptr) {
    if (labels->shape().z != info.shape.z || labels->shape().y != info.shape.y || labels->shape().x != info.shape.x) {
      return InvalidArgumentError("labels " + labels->shape().ToString() + " do not match the image " + info.shape.ToString());
    }
    IDLEGRID_RETURN_IF_ERROR(b.AddLabels(*labels, 0));
  }
  IDLEGRID_ASSIGN_OR_RETURN(models::DataFingerprint fp, b.Finish(r, labels != nullptr));
  fp.frames = info.frames;  // a series: architectures for one time point's depth
  return fp;
}

void Wizard::CapForQuickLook(models::ModelConfig& c) const {
  if (o_.max_steps_per_candidate <= 0) return;
  c.steps_per_epoch = std::min<int64_t>(c.steps_per_epoch, std::max<int64_t>(1, o_.max_steps_per_candidate / 2));
  c.epochs = std::min<int64_t>(c.epochs, 2);
}

// Image bytes the noise estimate reads: a few slices, spread through the stack.
constexpr int64_t kNoiseSampleBytes = int64_t{16} << 20;

StatusOr<double> Wizard::NoiseLevel() {
  if (!stack_) return FailedPreconditionError("no volume is open");
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffStackReader> reader, TiffStackReader::Open(session_.image_path));
  const TiffInfo info = reader->info();
  models::FingerprintBuilder b(info.shape, info.dtype, models::SampleSlices(info.shape, info.dtype, kNoiseSampleBytes));
  IDLEGRID_RETURN_IF_ERROR(b.AddSampledImage([&](int64_t z0, int64_t z1) { return reader->ReadSlices(z0, z1); }, 1));
  IDLEGRID_ASSIGN_OR_RETURN(models::DataFingerprint fp, b.Finish({}, false));
  return fp.NoiseLevel();
}

StatusOr<BlobRef> Wizard::ModelInput() {
  IDLEGRID_RETURN_IF_ERROR(EnsureImageUploaded());
  std::string job;
  for (const SessionJob& j : session_.jobs) {
    if (j.purpose == "candidates") job = j.job_id;
  }
  if (job.empty()) return image_blob_;
  IDLEGRID_ASSIGN_OR_RETURN(Json s, api_->JobStatus(job));
  if (s["outputs"].is_object() && s["outputs"].contains("denoised")) return BlobRef::FromJson(s["outputs"]["denoised"]);
  return image_blob_;
}

StatusOr<std::string> Wizard::TrainCandidates(bool denoise_first) {
  if (!annotation_) return FailedPreconditionError("open a volume first");
  if (annotation_->classes().size() < 2) return FailedPreconditionError("paint at least two classes");
  IDLEGRID_ASSIGN_OR_RETURN(models::DataFingerprint fp, Fingerprint(&annotation_->labels()));
  std::vector<models::ModelConfig> candidates = models::PlanCandidates(fp);
  Json list = Json::array();
  for (models::ModelConfig& c : candidates) {
    c.class_names.clear();
    for (const LabelClass& lc : annotation_->classes()) c.class_names.push_back(lc.name);
    c.class_names.resize(static_cast<size_t>(c.num_classes), "class");
    CapForQuickLook(c);
    list.push_back(models::ConfigToJson(c));
  }
  Job job;
  job.kind = JobKind::kSweep;
  job.name = "candidates";
  IDLEGRID_ASSIGN_OR_RETURN(job.inputs["labels"], UploadLabels());
  job.inputs["image"] = image_blob_;
  job.config = {{"candidates", list}};
  if (denoise_first) {
    job.config["denoise"] = "first";
    if (o_.max_steps_per_candidate > 0) {  // a quick look: the planned denoiser, capped
      models::ModelConfig d = models::PlanDenoiser(fp);
      CapForQuickLook(d);
      job.config["denoiser"] = models::ConfigToJson(d);
    }
  }
  IDLEGRID_ASSIGN_OR_RETURN(Json s, api_->Submit(job));
  const std::string id = s["job_id"];
  Track(id, "candidates");
  return id;
}

StatusOr<Json> Wizard::Wait(const std::string& job_id, int64_t timeout_s, const ProgressFn& progress) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  for (int64_t i = 0; i < (int64_t{1} << 40); ++i) {
    IDLEGRID_ASSIGN_OR_RETURN(Json s, api_->JobStatus(job_id));
    if (progress) progress(s);
    const std::string state = s["state"];
    if (state == "done") return s;
    if (state == "failed" || state == "cancelled") {
      return FailedPreconditionError("job " + job_id + " " + state + (s["error"].get<std::string>().empty() ? "" : ": " + s["error"].get<std::string>()));
    }
    if (std::chrono::steady_clock::now() >= until) return DeadlineExceededError("job " + job_id + " is still " + state);
    for (int k = 0; k < 5; ++k) {
      if (cancel_ != nullptr && *cancel_) return CancelledError("stopped waiting for job " + job_id);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  return DeadlineExceededError("job " + job_id);
}

StatusOr<std::vector<Candidate>> Wizard::Candidates() {
  std::string job;
  for (const SessionJob& j : session_.jobs) {
    if (j.purpose == "candidates") job = j.job_id;
  }
  if (job.empty()) return FailedPreconditionError("no candidates were trained yet");
  IDLEGRID_ASSIGN_OR_RETURN(Json s, api_->JobStatus(job));
  if (s["state"] != "done") return FailedPreconditionError("the candidates are still " + s["state"].get<std::string>());
  std::vector<Candidate> out;
  for (const Json& r : s["summary"]["ranking"]) {
    Candidate c;
    c.chain = r["chain"];
    c.name = r["name"];
    c.architecture = r["architecture"];
    c.score = r["score"].is_number() ? r["score"].get<double>() : -1;
    c.agreement = r.contains("agreement") && r["agreement"].is_number() ? r["agreement"].get<double>() : -1;
    c.why = r.contains("why") && r["why"].is_string() ? r["why"].get<std::string>() : "";
    IDLEGRID_ASSIGN_OR_RETURN(c.model, BlobRef::FromJson(r["model"]));
    out.push_back(c);
  }
  return out;
}

StatusOr<RoundReview> RoundReview::FromJson(const Json& review, const std::string& job_id) {
  RoundReview r;
  r.job_id = job_id;
  if (!review.is_object() || !review.contains("slices") || !review["slices"].is_array() || !review.contains("where") ||
      !review["where"].is_array()) {
    return InvalidArgumentError("job " + job_id + ": summary.review must hold slices and where");
  }
  for (const Json& e : review["slices"]) {
    if (!e.is_object() || !e.contains("z") || !e["z"].is_number_integer() || !e.contains("entropy") || !e["entropy"].is_number()) {
      return InvalidArgumentError("job " + job_id + ": summary.review.slices holds an entry without z and entropy");
    }
    r.uncertainty[e["z"].get<int64_t>()] = e["entropy"].get<double>();
  }
  for (const Json& z : review["where"]) {
    if (!z.is_number_integer() || r.uncertainty.count(z.get<int64_t>()) == 0) {
      return InvalidArgumentError("job " + job_id + ": summary.review.where names a slice that was not reviewed");
    }
    r.where.push_back(z.get<int64_t>());
  }
  if (review.contains("agreement") && review["agreement"].is_object()) {
    for (auto it = review["agreement"].begin(); it != review["agreement"].end(); ++it) {
      if (it.value().is_number()) r.agreement[it.key()] = it.value().get<double>();
    }
  }
  return r;
}

StatusOr<Volume> RoundReview::MapOf(int64_t z) const {
  auto it = uncertainty.find(z);
  if (it == uncertainty.end()) return NotFoundError("slice " + std::to_string(z) + " was not reviewed");
  const int64_t index = std::distance(uncertainty.begin(), it);  // the map holds the reviewed slices in Z order
  TiffReadOptions one;
  one.z_begin = index;
  one.z_end = index + 1;
  return ReadTiff(map_path, one);
}

int64_t RoundReview::Next(int64_t z) const {
  if (where.empty()) return -1;
  auto it = std::find(where.begin(), where.end(), z);
  if (it == where.end() || ++it == where.end()) return where.front();
  return *it;
}

StatusOr<RoundReview> Wizard::LatestReview() {
  for (auto j = session_.jobs.rbegin(); j != session_.jobs.rend(); ++j) {
    if (j->purpose != "candidates" && j->purpose != "retrain") continue;
    IDLEGRID_ASSIGN_OR_RETURN(Json s, api_->JobStatus(j->job_id));
    if (s["state"] != "done" || !s["summary"].is_object() || !s["summary"].contains("review")) continue;
    IDLEGRID_ASSIGN_OR_RETURN(RoundReview r, RoundReview::FromJson(s["summary"]["review"], j->job_id));
    r.map_path = o_.session_dir + "/uncertainty-" + j->job_id + ".tif";
    if (!std::filesystem::exists(r.map_path)) {
      const std::string tmp = r.map_path + ".part";
      Status st = api_->FetchOutput(j->job_id, "uncertainty", tmp);
      if (st.ok() && std::rename(tmp.c_str(), r.map_path.c_str()) != 0) st = ErrnoError("rename " + tmp, errno);
      if (!st.ok()) {
        std::remove(tmp.c_str());
        return st;
      }
    }
    return r;
  }
  return NotFoundError("no finished round of this session has a review");
}

StatusOr<std::string> Wizard::SubmitInfer(const BlobRef& model, const std::string& name, const Json& config) {
  IDLEGRID_RETURN_IF_ERROR(EnsureImageUploaded());
  Job job;
  job.kind = JobKind::kInfer;
  job.name = name;
  job.inputs["model"] = model;
  IDLEGRID_ASSIGN_OR_RETURN(job.inputs["volume"], ModelInput());
  job.config = config;
  IDLEGRID_ASSIGN_OR_RETURN(Json s, api_->Submit(job));
  return s["job_id"].get<std::string>();
}

StatusOr<BlobRef> Wizard::ChosenModel() {
  if (session_.chosen_model.empty()) return FailedPreconditionError("choose a candidate first");
  for (const SessionJob& j : session_.jobs) {
    StatusOr<Json> s = api_->JobStatus(j.job_id);
    if (!s.ok()) continue;
    for (auto it = (*s)["outputs"].begin(); it != (*s)["outputs"].end(); ++it) {
      if (it.value()["sha256"] == session_.chosen_model) return BlobRef::FromJson(it.value());
    }
  }
  return NotFoundError("the chosen model is not on this grid any more");
}

StatusOr<Volume> Wizard::Predict(const BlobRef& model, int64_t z_begin, int64_t z_end, int64_t timeout_s) {
  IDLEGRID_ASSIGN_OR_RETURN(std::vector<Volume> v, PredictAll({model}, z_begin, z_end, timeout_s));
  return std::move(v[0]);
}

StatusOr<std::vector<Volume>> Wizard::PredictAll(const std::vector<BlobRef>& models, int64_t z_begin, int64_t z_end,
                                                 int64_t timeout_s) {
  std::vector<std::string> ids;
  for (const BlobRef& m : models) {
    IDLEGRID_ASSIGN_OR_RETURN(std::string id, SubmitInfer(m, "preview", {{"output", "labels"}, {"z_range", {z_begin, z_end}}}));
    ids.push_back(id);
  }
  std::vector<Volume> out;
  for (const std::string& id : ids) {
    IDLEGRID_RETURN_IF_ERROR(Wait(id, timeout_s).status());
    const std::string path = o_.session_dir + "/preview-" + id + ".tif";
    IDLEGRID_RETURN_IF_ERROR(api_->FetchOutput(id, "labels", path));
    StatusOr<Volume> v = ReadTiff(path);
    std::remove(path.c_str());
    if (!v.ok()) return v.status();
    out.push_back(std::move(*v));
  }
  return out;
}

Status Wizard::Choose(const Candidate& c) {
  {
    std::lock_guard<std::mutex> lock(save_mu_);
    session_.chosen_model = c.model.sha256;
  }
  return Save();
}

StatusOr<std::string> Wizard::SubmitRetrain() {
  if (session_.chosen_model.empty()) return FailedPreconditionError("choose a candidate first");
  Job job;
  job.kind = JobKind::kTrain;
  job.name = "retrain";
  IDLEGRID_ASSIGN_OR_RETURN(job.inputs["labels"], UploadLabels());
  IDLEGRID_ASSIGN_OR_RETURN(job.inputs["image"], ModelInput());
  // The chosen model: a candidate, or the result of an earlier retrain.
  IDLEGRID_ASSIGN_OR_RETURN(job.inputs["init"], ChosenModel());
  job.config = {{"review", true}};  // where the fine-tuned model is still unsure: the next round
  IDLEGRID_ASSIGN_OR_RETURN(Json s, api_->Submit(job));
  const std::string id = s["job_id"];
  Track(id, "retrain");
  return id;
}

Status Wizard::AdoptModel(const std::string& job_id) {
  IDLEGRID_ASSIGN_OR_RETURN(Json s, api_->JobStatus(job_id));
  if (s["state"] != "done") return FailedPreconditionError("job " + job_id + " is " + s["state"].get<std::string>());
  if (!s["outputs"].is_object() || !s["outputs"].contains("model")) return NotFoundError("job " + job_id + " made no model");
  {
    std::lock_guard<std::mutex> lock(save_mu_);
    session_.chosen_model = s["outputs"]["model"]["sha256"];
  }
  return Save();
}

StatusOr<std::string> Wizard::Retrain(int64_t timeout_s, const ProgressFn& progress) {
  IDLEGRID_ASSIGN_OR_RETURN(std::string id, SubmitRetrain());
  IDLEGRID_RETURN_IF_ERROR(Wait(id, timeout_s, progress).status());
  IDLEGRID_RETURN_IF_ERROR(AdoptModel(id));
  return id;
}

StatusOr<std::string> Wizard::Apply() {
  IDLEGRID_ASSIGN_OR_RETURN(BlobRef model, ChosenModel());
  IDLEGRID_ASSIGN_OR_RETURN(std::string id, SubmitInfer(model, "apply", {{"output", "labels"}}));
  Track(id, "apply");
  return id;
}

Status Wizard::Export(const std::string& apply_job, const std::string& labels_path, const std::string& model_pt) {
  IDLEGRID_ASSIGN_OR_RETURN(Json s, api_->JobStatus(apply_job));
  if (s["state"] != "done") return FailedPreconditionError("the segmentation is still " + s["state"].get<std::string>());
  if (!labels_path.empty()) {
    VolumePath out = ParseVolumePath(labels_path);
    if (out.hdf5) {  // the grid gives TIFF: converted into the HDF5 file, streamed
      if (out.dataset.empty()) out.dataset = "/labels";
      const std::string tmp = out.file + ".download.tif";
      Status st = api_->FetchOutput(apply_job, "labels", tmp);
      if (st.ok()) st = ConvertTiffToHdf5(tmp, out);
      std::remove(tmp.c_str());
      IDLEGRID_RETURN_IF_ERROR(st);
    } else {
      IDLEGRID_RETURN_IF_ERROR(api_->FetchOutput(apply_job, "labels", labels_path));
    }
  }
  if (model_pt.empty()) return Status::Ok();
  IDLEGRID_ASSIGN_OR_RETURN(BlobRef model, ChosenModel());
  return api_->DownloadBlob(model, model_pt);
}

StatusOr<std::string> Wizard::Denoise() {
  IDLEGRID_RETURN_IF_ERROR(EnsureImageUploaded());
  Job job;
  job.kind = JobKind::kDenoise;
  job.name = "denoise";
  job.inputs["image"] = image_blob_;
  if (o_.max_steps_per_candidate > 0) {  // a quick look: the planned denoiser, capped
    IDLEGRID_ASSIGN_OR_RETURN(models::DataFingerprint fp, Fingerprint(nullptr));
    models::ModelConfig c = models::PlanDenoiser(fp);
    CapForQuickLook(c);
    job.config = {{"model", models::ConfigToJson(c)}};
  }
  IDLEGRID_ASSIGN_OR_RETURN(Json s, api_->Submit(job));
  const std::string id = s["job_id"];
  Track(id, "denoise");
  return id;
}

}  // namespace idlegrid::client
