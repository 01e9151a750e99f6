// idlegrid: the console for users and admins of a work server.
//
//   idlegrid login --server URL --fingerprint F --token ADMIN_TOKEN   (saved in config.json)
//   idlegrid submit segment --image I.tif --labels L.tif [--labels-time-point T] [--denoise first] [--wait]
//   idlegrid submit denoise --image I.tif
//   idlegrid submit train   --image I.tif [--labels L.tif] [--model CONFIG.json]
//   idlegrid submit infer   --model M.pt --volume V.tif [--config CONFIG.json] [--output labels]
//   idlegrid status JOB [--wait]    idlegrid jobs    idlegrid nodes    idlegrid stats
//   idlegrid cancel JOB             idlegrid fetch JOB -o out.tif [--output labels]
//   idlegrid token new [--label L]  idlegrid node revoke NODE
//
// Volumes are TIFF stacks (3D, or ImageJ hyperstacks with time points) or HDF5 datasets named
// file.h5:/path/to/dataset, in and out (converted to and from TIFF here, streamed: the grid
// moves TIFF only).
//
// --server/--token/--fingerprint (or --ca) override the config file
// (shared/config.h: $IDLEGRID_CONFIG_DIR or ~/.config/idlegrid/config.json).
#include <unistd.h>

#include <chrono>
#include <map>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <CLI/CLI.hpp>

#include "idlegrid/shared/api_client.h"
#include "idlegrid/shared/config.h"
#include "idlegrid/shared/crypto.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/hdf5_io.h"
#include "idlegrid/shared/tiff_io.h"

namespace idlegrid {
namespace {

struct Global {
  std::string server, token, fingerprint, ca, config_file;
  bool json = false;
};

int Fail(const Status& st) {
  std::fprintf(stderr, "idlegrid: %s\n", st.message().c_str());
  return st.code() == StatusCode::kInvalidArgument ? 2 : 1;
}

// What an upload or download is moving, shown on stderr at most twice a second: how much, how
// fast and about how long is left (a 10 GB volume takes minutes on a lab network).
class TransferProgress {
 public:
  static TransferProgress& Get() {
    static TransferProgress p;
    return p;
  }
  // `unit`: "MiB" for bytes, or a count's name ("slices").
  void Start(const std::string& what, const std::string& unit = "MiB") {
    what_ = what;
    unit_ = unit;
    t0_ = last_ = std::chrono::steady_clock::now();
    last_done_ = -1;
    shown_ = false;
  }
  void Show(int64_t done, int64_t total) {
    const auto now = std::chrono::steady_clock::now();
    if (what_.empty() || total <= 0 || done == last_done_) return;
    if (now - last_ < std::chrono::milliseconds(500) && done < total) return;
    last_ = now;
    last_done_ = done;
    const double s = std::chrono::duration<double>(now - t0_).count();
    const double rate = s > 0 ? static_cast<double>(done) / s : 0;
    const double left = rate > 0 ? static_cast<double>(total - done) / rate : 0;
    const double pct = 100.0 * static_cast<double>(done) / static_cast<double>(total);
    if (unit_ != "MiB") {
      std::fprintf(stderr, "\r%s: %lld of %lld %s (%.0f%%), about %.0f s left   ", what_.c_str(), static_cast<long long>(done),
                   static_cast<long long>(total), unit_.c_str(), pct, left);
    } else {
      std::fprintf(stderr, "\r%s: %.1f of %.1f MiB (%.0f%%), %.0f MiB/s, about %.0f s left   ", what_.c_str(),
                   static_cast<double>(done) / (1 << 20), static_cast<double>(total) / (1 << 20), pct, rate / (1 << 20), left);
    }
    shown_ = true;
  }
  void Finish() {
    if (shown_) std::fprintf(stderr, "\n");
    what_.clear();
  }

 private:
  std::string what_, unit_;
  std::chrono::steady_clock::time_point t0_, last_;
  int64_t last_done_ = -1;
  bool shown_ = false;
};

// A volume on its way to or from the grid, which moves TIFF stacks only: an HDF5 dataset
// ("file.h5:/path") goes through a TIFF stack in the cache folder, converted a range of
// slices at a time (never whole in memory), which is deleted afterwards.
class StagedVolume {
 public:
  StagedVolume() = default;
  StagedVolume(const StagedVolume&) = delete;
  StagedVolume& operator=(const StagedVolume&) = delete;
  ~StagedVolume() {
    if (!tiff_.empty() && temporary_) std::remove(tiff_.c_str());
  }
  // The TIFF to upload for `spec` (the file itself, or `spec` converted from HDF5).
  Status ForUpload(const std::string& spec) {
    spec_ = ParseVolumePath(spec);
    if (!spec_.hdf5) {
      tiff_ = spec;
      return Status::Ok();
    }
    IDLEGRID_RETURN_IF_ERROR(Temporary());
    IDLEGRID_ASSIGN_OR_RETURN(Hdf5Info info, ProbeHdf5(spec_));
    if (!info.note.empty()) std::fprintf(stderr, "%s: %s\n", spec.c_str(), info.note.c_str());
    TransferProgress::Get().Start("converting " + spec_.file + ":" + info.dataset + " (" + info.shape.ToString() + ") to TIFF", "slices");
    Status st = ConvertHdf5ToTiff(spec_, tiff_, [](int64_t done, int64_t total) { TransferProgress::Get().Show(done, total); });
    TransferProgress::Get().Finish();
    return st;
  }
  // Where to download a job output for `spec`: the file itself, or a TIFF that Finish()
  // converts into the named HDF5 dataset.
  Status ForDownload(const std::string& spec) {
    spec_ = ParseVolumePath(spec);
    if (!spec_.hdf5) {
      tiff_ = spec;
      return Status::Ok();
    }
    if (spec_.dataset.empty()) return InvalidArgumentError("name the dataset to write: " + spec + ":/path/to/dataset");
    return Temporary();
  }
  Status Finish() {
    if (!spec_.hdf5) return Status::Ok();
    TransferProgress::Get().Start("writing " + spec_.ToString(), "slices");
    Status st = ConvertTiffToHdf5(tiff_, spec_, [](int64_t done, int64_t total) { TransferProgress::Get().Show(done, total); });
    TransferProgress::Get().Finish();
    return st;
  }
  // Labels painted on one time point of the series `image_tiff`, T (1-based, as Fiji counts
  // time points): become the series' labels, every other time point empty (PlaceInSeries).
  Status PlaceAtTimePoint(const std::string& image_tiff, int64_t t) {
    IDLEGRID_ASSIGN_OR_RETURN(TiffInfo image, ProbeTiff(image_tiff));
    if (image.frames <= 1) return InvalidArgumentError("--labels-time-point: the image is one volume, not a series");
    const std::string src = tiff_;
    const bool src_temporary = temporary_;
    IDLEGRID_RETURN_IF_ERROR(Temporary());
    std::fprintf(stderr, "labels %s: time point %lld of %lld\n", src.c_str(), static_cast<long long>(t),
                 static_cast<long long>(image.frames));
    Status st = PlaceInSeries(src, image.frames, t - 1, tiff_);
    if (src_temporary) std::remove(src.c_str());
    return st;
  }
  const std::string& tiff() const { return tiff_; }

 private:
  Status Temporary() {
    IDLEGRID_ASSIGN_OR_RETURN(Paths paths, ResolvePaths());
    const std::string dir = paths.cache_dir + "/staging";
    IDLEGRID_RETURN_IF_ERROR(MakeDirs(dir, 0700));
    tiff_ = dir + "/" + RandomToken(8) + ".tif";
    temporary_ = true;
    return Status::Ok();
  }
  VolumePath spec_;
  std::string tiff_;
  bool temporary_ = false;
};

// A volume argument: an existing file, or an existing HDF5 file with a dataset path.
const CLI::Validator kVolumeFile(
    [](std::string& spec) -> std::string {
      const std::string file = ParseVolumePath(spec).file;
      return std::filesystem::is_regular_file(file) ? "" : "File does not exist: " + file;
    },
    "FILE[:/DATASET]");

StatusOr<std::unique_ptr<ApiClient>> Connect(Global g) {
  IDLEGRID_ASSIGN_OR_RETURN(Json config, LoadConfig(g.config_file));
  IDLEGRID_ASSIGN_OR_RETURN(std::string server, ConfigString(config, "server", ""));
  IDLEGRID_ASSIGN_OR_RETURN(std::string token, ConfigString(config, "token", ""));
  IDLEGRID_ASSIGN_OR_RETURN(std::string fingerprint, ConfigString(config, "fingerprint", ""));
  if (g.server.empty()) g.server = server;
  if (g.token.empty()) g.token = token;
  if (g.fingerprint.empty() && g.ca.empty()) g.fingerprint = fingerprint;
  if (g.server.empty()) {
    return InvalidArgumentError("no server: pass --server URL or run `idlegrid login` first");
  }
  HttpClientOptions o;
  o.base_url = g.server;
  o.bearer_token = g.token;
  o.pinned_cert_sha256 = g.fingerprint;
  o.ca_file = g.ca;
  o.max_attempts = 3;
  o.on_progress = [](int64_t done, int64_t total) { TransferProgress::Get().Show(done, total); };
  return ApiClient::Create(o);
}

std::string Bar(double fraction, int width = 30) {
  const int n = static_cast<int>(std::clamp(fraction, 0.0, 1.0) * width + 0.5);
  return "[" + std::string(n, '#') + std::string(width - n, '.') + "]";
}

// The review's slices, most uncertain first (the wizard goes there first too).
void PrintWhereToCorrect(const Json& review) {
  const int64_t frames = review.value("frames", int64_t{1}), depth = review.value("depth", int64_t{0});
  std::map<int64_t, double> entropy;
  for (const Json& e : review["slices"]) entropy[e["z"].get<int64_t>()] = e["entropy"].get<double>();
  std::printf("  where to correct (most uncertain of %zu reviewed slices first):\n", entropy.size());
  int shown = 0;
  for (const Json& z : review["where"]) {
    if (++shown > 10) break;
    const int64_t g = z.get<int64_t>();
    const std::string where = frames > 1 && depth > 0 ? "time point " + std::to_string(g / depth + 1) + ", slice " +
                                                            std::to_string(g % depth + 1)
                                                      : "slice " + std::to_string(g + 1);
    std::printf("    %-28s uncertainty %.3f\n", where.c_str(), entropy[g]);
  }
}

// "stage 2/5 (denoise)": the current stage and what it does.
std::string StageLabel(const Json& s) {
  const int stage = s["stage"].get<int>();
  std::string out = "stage " + std::to_string(stage) + "/" + std::to_string(s["stages"].get<int>());
  if (s.contains("stage_names") && s["stage_names"].is_array() && stage >= 1 &&
      stage <= static_cast<int>(s["stage_names"].size())) {
    out += " (" + s["stage_names"][stage - 1].get<std::string>() + ")";
  }
  return out;
}

void PrintStatus(const Json& s, bool units) {
  std::printf("%s  %s \"%s\"  %s  %s %3.0f%%  %s\n", s["job_id"].get<std::string>().c_str(),
              s["kind"].get<std::string>().c_str(), s["name"].get<std::string>().c_str(),
              s["state"].get<std::string>().c_str(), Bar(s["progress"].get<double>()).c_str(),
              100 * s["progress"].get<double>(), StageLabel(s).c_str());
  if (s.contains("stage_names") && s["stage_names"].size() > 1) {
    std::string all;
    for (const Json& n : s["stage_names"]) all += (all.empty() ? "" : " -> ") + n.get<std::string>();
    std::printf("  stages: %s\n", all.c_str());
  }
  if (s.contains("summary") && s["summary"].contains("denoiser")) {
    const Json& d = s["summary"]["denoiser"];
    std::printf("  denoised first with %s\n", d.value("name", std::string("a denoiser")).c_str());
  }
  if (!s["error"].get<std::string>().empty()) std::printf("  error: %s\n", s["error"].get<std::string>().c_str());
  if (s.contains("notes")) {
    for (const Json& n : s["notes"]) std::printf("  note: %s\n", n.get<std::string>().c_str());
  }
  if (units) {
    for (const Json& u : s["units"]) {
      std::string what = u["kind"].get<std::string>();
      if (u.contains("epochs")) {
        what += " epochs " + std::to_string(u["epochs"][0].get<int64_t>()) + "-" +
                std::to_string(u["epochs"][1].get<int64_t>()) + " (done " +
                std::to_string(u["epochs_done"].get<int64_t>()) + ")";
      }
      if (u.contains("slab")) {
        what += " z " + std::to_string(u["slab"][0].get<int64_t>()) + "-" + std::to_string(u["slab"][1].get<int64_t>());
      }
      std::printf("  %-32s %-9s %3.0f%%  %-40s %s\n", u["unit_id"].get<std::string>().c_str(),
                  u["state"].get<std::string>().c_str(), 100 * u["progress"].get<double>(), what.c_str(),
                  u["node"].is_null() ? "" : ("node " + u["node"].get<std::string>()).c_str());
    }
  }
  const Json* review = s.contains("summary") && s["summary"].contains("review") ? &s["summary"]["review"] : nullptr;
  if (s.contains("summary") && s["summary"].contains("ranking")) {
    std::printf("  ranking by validation score%s:\n", review ? " (agreement: with the other candidates, on the reviewed slices)" : "");
    for (const Json& r : s["summary"]["ranking"]) {
      const std::string chain = r.value("chain", std::string());
      const bool agreed = review && (*review)["agreement"].contains(chain);
      std::printf("    %-20s %-10s %s\n", r["name"].get<std::string>().c_str(),
                  r["score"].is_null() ? "-" : std::to_string(r["score"].get<double>()).c_str(),
                  agreed ? ("agreement " + std::to_string((*review)["agreement"][chain].get<double>())).c_str() : "");
    }
  }
  if (review) PrintWhereToCorrect(*review);
  for (auto it = s["outputs"].begin(); it != s["outputs"].end(); ++it) {
    std::printf("  output %-16s %s (%lld bytes)\n", it.key().c_str(), it.value()["sha256"].get<std::string>().c_str(),
                static_cast<long long>(it.value()["size"].get<int64_t>()));
  }
}

// Polls until the job ends (bounded by timeout_s); draws a progress line on a terminal.
int Wait(ApiClient& api, const std::string& job_id, int64_t timeout_s, bool json) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  const bool tty = ::isatty(STDOUT_FILENO);
  while (true) {
    StatusOr<Json> s = api.JobStatus(job_id);
    if (!s.ok()) return Fail(s.status());
    const std::string state = (*s)["state"];
    const bool over = state == "done" || state == "failed" || state == "cancelled";
    if (over || std::chrono::steady_clock::now() >= until) {
      if (tty) std::printf("\n");
      if (json) {
        std::printf("%s\n", s->dump(2).c_str());
      } else {
        PrintStatus(*s, false);
      }
      if (!over) {
        std::fprintf(stderr, "idlegrid: still %s after %lld s\n", state.c_str(), static_cast<long long>(timeout_s));
        return 3;
      }
      return state == "done" ? 0 : 1;
    }
    if (tty) {
      int done = 0, running = 0, total = 0;
      for (const Json& u : (*s)["units"]) {
        ++total;
        done += u["state"] == "done";
        running += u["state"] == "leased";
      }
      std::printf("\r%s %s %3.0f%%  %s  units %d/%d done, %d running   ", job_id.c_str(),
                  Bar((*s)["progress"].get<double>()).c_str(), 100 * (*s)["progress"].get<double>(),
                  StageLabel(*s).c_str(), done, total, running);
      std::fflush(stdout);
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace
}  // namespace idlegrid

int main(int argc, char** argv) {
  using namespace idlegrid;
  CLI::App app{"idlegrid: submit and watch jobs, manage nodes and tokens of a work server"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may come after the subcommand
  Global g;
  StatusOr<Paths> paths = ResolvePaths();
  g.config_file = paths.ok() ? paths->config_file() : "";
  app.add_option("--server", g.server, "server URL, e.g. https://lab-server:8443");
  app.add_option("--token", g.token, "admin token");
  app.add_option("--fingerprint", g.fingerprint, "the server certificate's SHA-256 fingerprint");
  app.add_option("--ca", g.ca, "trust certificates signed by this CA file instead of a fingerprint");
  app.add_option("--config", g.config_file, "config file");
  app.add_flag("--json", g.json, "print JSON");

  auto* login = app.add_subcommand("login", "save server, fingerprint and token in the config file");

  auto* submit = app.add_subcommand("submit", "submit a job");
  submit->require_subcommand(1);
  std::string image, labels, model, volume, config_path, output, name, denoise = "no";
  int64_t epochs_per_unit = 0, timeout_s = 7 * 86400, labels_time_point = 0;
  bool wait = false;
  auto common = [&](CLI::App* c) {
    c->add_option("--name", name, "a name for the job");
    c->add_flag("--wait", wait, "wait for the job, showing progress");
    c->add_option("--timeout", timeout_s, "with --wait: give up after this many seconds");
  };
  auto* seg = submit->add_subcommand("segment", "train candidate models on painted labels, keep the best, segment the volume");
  seg->add_option("--image", image, "volume (TIFF, or file.h5:/dataset)")->required()->check(kVolumeFile);
  seg->add_option("--labels", labels, "labels (TIFF or HDF5, uint8: 0 unlabelled, 1..K classes)")->required()->check(kVolumeFile);
  const char* kTimePointHelp = "the labels are one volume painted on time point T (1 = first) of a series image";
  seg->add_option("--labels-time-point", labels_time_point, kTimePointHelp)->check(CLI::PositiveNumber);
  const char* kDenoiseHelp = "first: denoise the image (self-supervised), then train and segment on the denoised volume";
  seg->add_option("--denoise", denoise, kDenoiseHelp)->check(CLI::IsMember({"first", "no"}));
  common(seg);
  auto* den = submit->add_subcommand("denoise", "self-supervised denoising (no labels)");
  den->add_option("--image", image, "noisy volume (TIFF, or file.h5:/dataset)")->required()->check(kVolumeFile);
  common(den);
  auto* tr = submit->add_subcommand("train", "train one model");
  tr->add_option("--image", image, "volume (TIFF, or file.h5:/dataset)")->required()->check(kVolumeFile);
  tr->add_option("--labels", labels, "labels (TIFF or HDF5); without: a denoiser")->check(kVolumeFile);
  tr->add_option("--labels-time-point", labels_time_point, kTimePointHelp)->check(CLI::PositiveNumber);
  tr->add_option("--model", config_path, "model configuration (JSON); default: planned from the data")->check(CLI::ExistingFile);
  tr->add_option("--epochs-per-unit", epochs_per_unit, "epochs per work unit; default: sized to minutes");
  tr->add_option("--denoise", denoise, kDenoiseHelp)->check(CLI::IsMember({"first", "no"}));
  common(tr);
  auto* inf = submit->add_subcommand("infer", "apply a model package to a volume");
  inf->add_option("--model", model, "model package (.pt)")->required()->check(CLI::ExistingFile);
  inf->add_option("--volume", volume, "volume (TIFF, or file.h5:/dataset)")->required()->check(kVolumeFile);
  inf->add_option("--config", config_path, "the model's configuration (JSON), unless this server trained it")->check(CLI::ExistingFile);
  inf->add_option("--output", output, "labels, probabilities or denoised");
  common(inf);

  std::string job_id, node_id, dest, label;
  auto* status = app.add_subcommand("status", "a job's state, units and outputs");
  status->add_option("job", job_id)->required();
  status->add_flag("--wait", wait, "wait until the job ends, with a progress bar");
  status->add_option("--timeout", timeout_s, "with --wait: give up after this many seconds");
  app.add_subcommand("jobs", "list jobs");
  app.add_subcommand("nodes", "list compute nodes");
  app.add_subcommand("stats", "queue statistics");
  auto* cancel = app.add_subcommand("cancel", "cancel a job");
  cancel->add_option("job", job_id)->required();
  auto* fetch = app.add_subcommand("fetch", "download a job's output");
  fetch->add_option("job", job_id)->required();
  fetch->add_option("-o,--out", dest, "destination file (TIFF, or file.h5:/dataset for HDF5)")->required();
  fetch->add_option("--output", output, "which output (default: labels, denoised or model)");
  auto* token = app.add_subcommand("token", "tokens");
  token->require_subcommand(1);
  auto* token_new = token->add_subcommand("new", "create an enrollment token for nodes");
  token_new->add_option("--label", label, "what it is for");
  auto* node = app.add_subcommand("node", "compute nodes");
  node->require_subcommand(1);
  auto* revoke = node->add_subcommand("revoke", "revoke a node (its units go back to the queue)");
  revoke->add_option("node", node_id)->required();

  CLI11_PARSE(app, argc, argv);

  if (login->parsed()) {
    if (g.server.empty() || g.token.empty() || (g.fingerprint.empty() && g.ca.empty())) {
      return Fail(InvalidArgumentError("login needs --server, --token and --fingerprint (or --ca)"));
    }
    StatusOr<Json> config = LoadConfig(g.config_file);
    if (!config.ok()) return Fail(config.status());
    (*config)["server"] = g.server;
    (*config)["token"] = g.token;
    if (!g.fingerprint.empty()) (*config)["fingerprint"] = g.fingerprint;
    g.fingerprint.clear();  // check the connection with exactly what was saved
    StatusOr<std::unique_ptr<ApiClient>> probe = [&]() {
      Global saved = g;
      saved.fingerprint = config->value("fingerprint", "");
      return Connect(saved);
    }();
    if (!probe.ok()) return Fail(probe.status());
    StatusOr<Json> stats = (*probe)->Stats();
    if (!stats.ok()) return Fail(stats.status());
    const size_t slash = g.config_file.rfind('/');
    if (slash != std::string::npos) {
      Status mk = MakeDirs(g.config_file.substr(0, slash), 0700);
      if (!mk.ok()) return Fail(mk);
    }
    Status st = SaveConfig(g.config_file, *config);
    if (!st.ok()) return Fail(st);
    std::printf("logged in to %s (%lld nodes); saved in %s\n", g.server.c_str(),
                static_cast<long long>((*stats)["nodes"].get<int64_t>()), g.config_file.c_str());
    return 0;
  }

  StatusOr<std::unique_ptr<ApiClient>> api_or = Connect(g);
  if (!api_or.ok()) return Fail(api_or.status());
  ApiClient& api = **api_or;

  if (submit->parsed()) {
    Job job;
    job.job_id = "new";
    job.name = name;
    std::vector<std::unique_ptr<StagedVolume>> staged;
    auto upload = [&](const std::string& input, const std::string& spec) -> Status {
      staged.push_back(std::make_unique<StagedVolume>());
      if (input != "model") IDLEGRID_RETURN_IF_ERROR(staged.back()->ForUpload(spec).WithContext(input));
      if (input == "labels" && labels_time_point > 0) {  // staged[0] is the image
        IDLEGRID_RETURN_IF_ERROR(staged.back()->PlaceAtTimePoint(staged.front()->tiff(), labels_time_point).WithContext(input));
      }
      const std::string path = input != "model" ? staged.back()->tiff() : spec;
      StatusOr<uint64_t> size = FileSize(path);
      if (!size.ok()) return size.status().WithContext(input);
      std::fprintf(stderr, "hashing %s (%s, %.1f MiB) ...\n", path.c_str(), input.c_str(),
                   static_cast<double>(*size) / (1 << 20));
      TransferProgress::Get().Start("uploading " + path);
      StatusOr<BlobRef> ref = api.UploadFile(path);
      TransferProgress::Get().Finish();
      if (!ref.ok()) return ref.status().WithContext(input);
      job.inputs[input] = *ref;
      return Status::Ok();
    };
    auto read_config = [&](const std::string& path) -> StatusOr<Json> {
      IDLEGRID_ASSIGN_OR_RETURN(std::string text, ReadFile(path, 1 << 20));
      return ParseJson(text);
    };
    Status st;
    if (seg->parsed()) {
      job.kind = JobKind::kSweep;
      job.config = {{"infer", "labels"}};
      if (denoise == "first") job.config["denoise"] = "first";
      st = upload("image", image);
      if (st.ok()) st = upload("labels", labels);
    } else if (den->parsed()) {
      job.kind = JobKind::kDenoise;
      st = upload("image", image);
    } else if (tr->parsed()) {
      job.kind = JobKind::kTrain;
      if (!config_path.empty()) {
        StatusOr<Json> c = read_config(config_path);
        if (!c.ok()) return Fail(c.status());
        job.config["model"] = *c;
      }
      if (epochs_per_unit > 0) job.config["epochs_per_unit"] = epochs_per_unit;
      if (denoise == "first") {
        if (labels.empty()) return Fail(InvalidArgumentError("--denoise first segments: it needs --labels"));
        job.config["denoise"] = "first";
      }
      st = upload("image", image);
      if (st.ok() && !labels.empty()) st = upload("labels", labels);
    } else {
      job.kind = JobKind::kInfer;
      if (!config_path.empty()) {
        StatusOr<Json> c = read_config(config_path);
        if (!c.ok()) return Fail(c.status());
        job.config["model"] = *c;
      }
      if (!output.empty()) job.config["output"] = output;
      st = upload("model", model);
      if (st.ok()) st = upload("volume", volume);
    }
    if (!st.ok()) return Fail(st);
    StatusOr<Json> s = api.Submit(job);
    if (!s.ok()) return Fail(s.status());
    const std::string id = (*s)["job_id"];
    if (g.json) {
      std::printf("%s\n", s->dump(2).c_str());
    } else {
      std::printf("%s\n", id.c_str());
      std::fprintf(stderr, "submitted %s: %zu units in stage 1 of %d\n", id.c_str(), (*s)["units"].size(),
                   (*s)["stages"].get<int>());
    }
    return wait ? Wait(api, id, timeout_s, g.json) : 0;
  }
  if (status->parsed()) {
    if (wait) return Wait(api, job_id, timeout_s, g.json);
    StatusOr<Json> s = api.JobStatus(job_id);
    if (!s.ok()) return Fail(s.status());
    if (g.json) {
      std::printf("%s\n", s->dump(2).c_str());
    } else {
      PrintStatus(*s, true);
    }
    return 0;
  }
  if (app.got_subcommand("jobs")) {
    StatusOr<Json> j = api.Jobs();
    if (!j.ok()) return Fail(j.status());
    if (g.json) return std::printf("%s\n", j->dump(2).c_str()), 0;
    std::printf("%-16s %-8s %-20s %-10s %s\n", "JOB", "KIND", "NAME", "STATE", "UNITS done/running/all");
    for (const Json& x : (*j)["jobs"]) {
      std::printf("%-16s %-8s %-20s %-10s %lld/%lld/%lld %s\n", x["job_id"].get<std::string>().c_str(),
                  x["kind"].get<std::string>().c_str(), x["name"].get<std::string>().c_str(),
                  x["state"].get<std::string>().c_str(), static_cast<long long>(x["units_done"].get<int64_t>()),
                  static_cast<long long>(x["units_running"].get<int64_t>()),
                  static_cast<long long>(x["units"].get<int64_t>()), x["error"].get<std::string>().c_str());
    }
    return 0;
  }
  if (app.got_subcommand("nodes")) {
    StatusOr<Json> n = api.Nodes();
    if (!n.ok()) return Fail(n.status());
    if (g.json) return std::printf("%s\n", n->dump(2).c_str()), 0;
    std::printf("%-20s %-20s %5s %8s %-8s %6s %s\n", "NODE", "HOST", "CORES", "RAM GiB", "STATE", "UNITS", "RUNNING");
    for (const Json& x : (*n)["nodes"]) {
      std::printf("%-20s %-20s %5lld %8.1f %-8s %6lld %s\n", x["node_id"].get<std::string>().c_str(),
                  x["info"]["hostname"].get<std::string>().c_str(),
                  static_cast<long long>(x["info"]["cores"].get<int64_t>()),
                  x["info"]["ram_bytes"].get<double>() / (1 << 30),
                  x["revoked"].get<bool>() ? "revoked" : (x["online"].get<bool>() ? "online" : "offline"),
                  static_cast<long long>(x["units_done"].get<int64_t>()),
                  x["running"].is_null() ? "" : x["running"].get<std::string>().c_str());
    }
    return 0;
  }
  if (app.got_subcommand("stats")) {
    StatusOr<Json> s = api.Stats();
    if (!s.ok()) return Fail(s.status());
    std::printf("%s\n", s->dump(2).c_str());
    return 0;
  }
  if (cancel->parsed()) {
    Status st = api.Cancel(job_id);
    if (!st.ok()) return Fail(st);
    std::printf("cancelled %s\n", job_id.c_str());
    return 0;
  }
  if (fetch->parsed()) {
    if (output.empty()) {
      StatusOr<Json> s = api.JobStatus(job_id);
      if (!s.ok()) return Fail(s.status());
      for (const char* n : {"labels", "denoised", "model"}) {
        if ((*s)["outputs"].contains(n)) {
          output = n;
          break;
        }
      }
      if (output.empty()) {
        return Fail(NotFoundError("job " + job_id + " has no output yet (state " + (*s)["state"].get<std::string>() + ")"));
      }
    }
    StagedVolume target;
    Status st = output == "model" ? Status::Ok() : target.ForDownload(dest);
    if (!st.ok()) return Fail(st);
    const std::string path = output == "model" ? dest : target.tiff();
    TransferProgress::Get().Start("downloading " + output + " to " + path);
    st = api.FetchOutput(job_id, output, path);
    TransferProgress::Get().Finish();
    if (st.ok() && output != "model") st = target.Finish();
    if (!st.ok()) return Fail(st);
    std::printf("%s -> %s\n", output.c_str(), dest.c_str());
    return 0;
  }
  if (token_new->parsed()) {
    StatusOr<std::string> t = api.NewEnrollToken(label);
    if (!t.ok()) return Fail(t.status());
    std::printf("%s\n", t->c_str());
    return 0;
  }
  if (revoke->parsed()) {
    Status st = api.RevokeNode(node_id);
    if (!st.ok()) return Fail(st);
    std::printf("revoked %s\n", node_id.c_str());
    return 0;
  }
  return 0;
}
