#include "idlegrid/client/node.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <thread>

#include "idlegrid/shared/api_client.h"
#include "idlegrid/shared/crypto.h"
#include "idlegrid/shared/envelope.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/log.h"
#include "idlegrid/shared/png.h"
#include "idlegrid/shared/tiff_io.h"

extern char** environ;

namespace idlegrid::client {

namespace {

using Clock = std::chrono::steady_clock;

int64_t UnixNow() { return static_cast<int64_t>(std::time(nullptr)); }

// Input within this long counts as "the user is active"; idle this long allows work again.
constexpr int64_t kActiveMs = 1000;
constexpr int64_t kResumeIdleMs = 2000;

void SleepFor(int64_t ms, const std::atomic<bool>& stop) {
  const auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (!stop.load() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

// Output files of the worker and the names the server knows them by.
const std::pair<const char*, const char*> kOutputs[] = {
    {"checkpoint.pt", "checkpoint"}, {"metrics.json", "metrics"},         {"model.pt", "model"},
    {"labels.tif", "labels"},        {"probabilities.tif", "probabilities"}, {"denoised.tif", "denoised"},
    {"uncertainty.tif", "uncertainty"}, {"review.json", "review"}};

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void RemoveTree(const std::string& path) {
  DIR* d = opendir(path.c_str());
  if (d != nullptr) {
    for (dirent* e = readdir(d); e != nullptr; e = readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      const std::string child = path + "/" + name;
      struct stat st;
      if (::lstat(child.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        RemoveTree(child);
      } else {
        ::unlink(child.c_str());
      }
    }
    closedir(d);
  }
  ::rmdir(path.c_str());
}

}  // namespace

// --- identity and policy ------------------------------------------------------------------

Json NodeIdentity::ToJson() const {
  return {{"server", server}, {"fingerprint", fingerprint}, {"node_id", node_id},
          {"secret", secret}, {"public_key", public_key_pem}};
}

StatusOr<NodeIdentity> NodeIdentity::FromJson(const Json& j) {
  JsonReader r(j, "node identity");
  NodeIdentity id;
  id.server = r.String("server", kMaxUrlLength);
  id.fingerprint = r.String("fingerprint", 200);
  id.node_id = r.Id("node_id");
  id.secret = r.String("secret", 256);
  id.public_key_pem = r.String("public_key", 4096);
  IDLEGRID_RETURN_IF_ERROR(r.Finish());
  return id;
}

StatusOr<NodeIdentity> Enroll(const std::string& server, const std::string& token,
                              const std::string& fingerprint, const NodeInfo& info) {
  HttpClientOptions o;
  o.base_url = server;
  o.pinned_cert_sha256 = fingerprint;
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<ApiClient> api, ApiClient::Create(o));
  IDLEGRID_ASSIGN_OR_RETURN(Enrollment e, api->Enroll(token, info));
  // The key must parse before we promise to trust it.
  IDLEGRID_RETURN_IF_ERROR(PublicKey::FromPem(e.public_key_pem).status());
  return NodeIdentity{server, fingerprint, e.node_id, e.secret, e.public_key_pem};
}

Status SaveIdentity(const std::string& path, const NodeIdentity& id) {
  return WriteFileAtomic(path, id.ToJson().dump(2) + "\n", 0600);
}

StatusOr<NodeIdentity> LoadIdentity(const std::string& path) {
  StatusOr<std::string> text = ReadFile(path, 1 << 20);
  if (!text.ok()) {
    return NotFoundError("this node is not enrolled (" + path +
                         "): run idlegrid-node enroll --server URL --fingerprint F --token T");
  }
  IDLEGRID_ASSIGN_OR_RETURN(Json j, ParseJson(*text));
  return NodeIdentity::FromJson(j);
}

Json NodePolicy::ToJson() const {
  const char* m = mode == Mode::kAlways ? "always" : mode == Mode::kIdle ? "idle" : "windows";
  return {{"mode", m}, {"idle_after_s", idle_after_s}, {"grace_s", grace_s}, {"windows", windows},
          {"max_threads", max_threads}, {"use_gpu", use_gpu}};
}

StatusOr<NodePolicy> NodePolicy::FromJson(const Json& j) {
  NodePolicy p;
  if (!j.is_object()) return InvalidArgumentError("policy must be an object");
  JsonReader r(j, "policy");
  if (r.Has("mode")) {
    const std::string m = r.Enum("mode", {"always", "idle", "windows"});
    p.mode = m == "always" ? Mode::kAlways : m == "idle" ? Mode::kIdle : Mode::kWindows;
  }
  if (r.Has("idle_after_s")) p.idle_after_s = r.Int("idle_after_s", 0, 86400 * 7);
  if (r.Has("grace_s")) p.grace_s = r.Int("grace_s", 0, 86400);
  if (r.Has("max_threads")) p.max_threads = r.Int("max_threads", 0, 4096);
  if (r.Has("use_gpu")) p.use_gpu = r.Bool("use_gpu");
  if (r.Has("windows")) {
    for (const Json& w : r.Array("windows", 64)) {
      if (!w.is_string()) return InvalidArgumentError("policy.windows holds \"HH:MM-HH:MM\" strings");
      IDLEGRID_RETURN_IF_ERROR(InWindow(w.get<std::string>(), 0).status());
      p.windows.push_back(w.get<std::string>());
    }
  }
  IDLEGRID_RETURN_IF_ERROR(r.Finish());
  return p;
}

StatusOr<bool> InWindow(const std::string& w, int minute) {
  int h1, m1, h2, m2;
  char tail;
  if (std::sscanf(w.c_str(), "%d:%d-%d:%d%c", &h1, &m1, &h2, &m2, &tail) != 4 || h1 < 0 || h1 > 24 ||
      h2 < 0 || h2 > 24 || m1 < 0 || m1 > 59 || m2 < 0 || m2 > 59) {
    return InvalidArgumentError("a time window is \"HH:MM-HH:MM\", not \"" + w + "\"");
  }
  const int a = h1 * 60 + m1, b = h2 * 60 + m2;
  if (a == b) return true;  // all day
  return a < b ? (minute >= a && minute < b) : (minute >= a || minute < b);
}

Json NodeStatus::ToJson() const {
  return {{"state", state}, {"unit_id", unit_id}, {"job_id", job_id}, {"kind", kind},
          {"message", message}, {"last_error", last_error}, {"progress", progress},
          {"epoch", epoch}, {"worker_pid", worker_pid}, {"units_done", units_done},
          {"units_failed", units_failed}, {"units_given_back", units_given_back},
          {"refused", refused}, {"preview", preview}, {"bytes_downloaded", bytes_downloaded},
          {"data_bytes_downloaded", data_bytes_downloaded},
          {"worker_peak_rss_mib", worker_peak_rss_mib}};
}

// --- the daemon ---------------------------------------------------------------------------

struct NodeDaemon::Impl {
  NodeDaemon& self;
  NodeIdentity id;
  NodeOptions o;
  std::unique_ptr<ApiClient> api;
  std::optional<PublicKey> pinned;
  ReplayGuard replay;
  mutable std::mutex mu;
  NodeStatus st;  // guarded by mu
  std::thread socket_thread;
  int listen_fd = -1;
  std::optional<std::vector<GpuInfo>> gpus;
  std::atomic<int> mode;  // NodePolicy::Mode, changeable at run time (the tray's toggle)

  Impl(NodeDaemon& d, NodeIdentity i, NodeOptions opt)
      : self(d), id(std::move(i)), o(std::move(opt)), mode(static_cast<int>(o.policy.mode)) {}
  NodePolicy::Mode Mode() const { return static_cast<NodePolicy::Mode>(mode.load()); }

  template <typename F>
  void Update(F f) {
    std::lock_guard<std::mutex> lock(mu);
    f(st);
  }
  void Error(const std::string& what) {
    IDLEGRID_LOG(kWarning) << what;
    Update([&](NodeStatus& s) { s.last_error = what; });
  }

  // Whether the policy lets this machine compute now; `why` says why not.
  bool Allowed(std::string* why) {
    if (self.paused_.load()) {
      *why = "paused";
      return false;
    }
    if (Mode() == NodePolicy::Mode::kIdle) {
      std::optional<int64_t> idle = o.idle ? o.idle->IdleMs() : std::nullopt;
      if (!idle || *idle < std::max<int64_t>(o.policy.idle_after_s * 1000, kResumeIdleMs)) {
        *why = idle ? "the user is active" : "cannot tell whether the user is idle";
        return false;
      }
    }
    if (Mode() == NodePolicy::Mode::kWindows) {
      const std::time_t t = std::time(nullptr);
      std::tm local{};
      localtime_r(&t, &local);
      const int minute = local.tm_hour * 60 + local.tm_min;
      bool any = false;
      for (const std::string& w : o.policy.windows) {
        StatusOr<bool> in = InWindow(w, minute);
        any = any || (in.ok() && *in);
      }
      if (!any) {
        *why = "outside the time windows";
        return false;
      }
    }
    return true;
  }
  // While a unit runs: the user came back (or the node was paused).
  bool ShouldSuspend() {
    if (self.paused_.load()) return true;
    if (Mode() != NodePolicy::Mode::kIdle || o.idle == nullptr) return false;
    std::optional<int64_t> idle = o.idle->IdleMs();
    return idle && *idle < kActiveMs;
  }
  bool CanResume() {
    if (self.paused_.load()) return false;
    if (Mode() != NodePolicy::Mode::kIdle || o.idle == nullptr) return true;
    std::optional<int64_t> idle = o.idle->IdleMs();
    // Back to work once the user has left the machine alone for a while (never less than
    // the "active" threshold, or a suspended worker would flicker).
    const int64_t need = std::max<int64_t>(kResumeIdleMs, std::min<int64_t>(o.policy.idle_after_s, 10) * 1000);
    return idle && *idle >= need;
  }

  Status Init() {
    HttpClientOptions h;
    h.base_url = id.server;
    h.pinned_cert_sha256 = id.fingerprint;
    h.bearer_token = id.node_id + ":" + id.secret;
    // No cancel flag: giving a unit back when stopping must still reach the server.
    IDLEGRID_ASSIGN_OR_RETURN(api, ApiClient::Create(h));
    IDLEGRID_ASSIGN_OR_RETURN(PublicKey k, PublicKey::FromPem(id.public_key_pem));
    pinned = k;
    if (::access(o.worker.c_str(), X_OK) != 0) return NotFoundError("no worker at " + o.worker);
    IDLEGRID_RETURN_IF_ERROR(MakeDirs(o.work_dir + "/blobs", 0700));
    if (o.policy.mode == NodePolicy::Mode::kIdle && o.idle == nullptr) {
      return FailedPreconditionError("\"run only when idle\" needs a way to tell idle time (X11 or /dev/input)");
    }
    return Status::Ok();
  }

  // --- status socket ---
  Status StartSocket() {
    if (o.status_socket.empty()) return Status::Ok();
    ::unlink(o.status_socket.c_str());
    listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (o.status_socket.size() >= sizeof(addr.sun_path)) return InvalidArgumentError("socket path too long");
    std::strncpy(addr.sun_path, o.status_socket.c_str(), sizeof(addr.sun_path) - 1);
    if (::bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(listen_fd, 8) != 0) {
      return ErrnoError("status socket " + o.status_socket, errno);
    }
    ::chmod(o.status_socket.c_str(), 0600);
    socket_thread = std::thread([this] { ServeSocket(); });
    return Status::Ok();
  }
  void ServeSocket() {
    for (int64_t i = 0; !self.stop_.load() && i < (int64_t{1} << 40); ++i) {
      pollfd p{listen_fd, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      const int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      // One thread serves every client in turn, so each gets one second in all to send its
      // command: a client that trickles bytes must not hold off the tray's pause.
      std::string command;
      char buf[256];
      pollfd cp{c, POLLIN, 0};
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (command.find('\n') == std::string::npos && command.size() < 200) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || ::poll(&cp, 1, static_cast<int>(left.count())) <= 0) break;
        const ssize_t n = ::read(c, buf, sizeof(buf));
        if (n <= 0) break;
        command.append(buf, static_cast<size_t>(n));
      }
      command = command.substr(0, command.find('\n'));
      Json reply;
      if (command == "pause" || command == "resume") {
        self.Pause(command == "pause");
        reply = {{"ok", true}, {"paused", command == "pause"}};
      } else if (command == "policy always" || (command == "policy idle" && o.idle != nullptr)) {
        mode = static_cast<int>(command == "policy idle" ? NodePolicy::Mode::kIdle : NodePolicy::Mode::kAlways);
        reply = {{"ok", true}, {"policy", command.substr(7)}};
      } else if (command == "policy idle") {
        reply = {{"error", "this node cannot tell whether its user is idle"}};
      } else if (command == "status" || command.empty()) {
        reply = self.status().ToJson();
        reply["paused"] = self.paused_.load();
        reply["node_id"] = id.node_id;
        reply["server"] = id.server;
        reply["policy"] = Mode() == NodePolicy::Mode::kIdle ? "idle" : Mode() == NodePolicy::Mode::kAlways ? "always" : "windows";
      } else {
        reply = {{"error", "unknown command; use status, pause, resume, policy always or policy idle"}};
      }
      const std::string out = reply.dump() + "\n";
      if (::send(c, out.data(), out.size(), MSG_NOSIGNAL) < 0) {
        // the client went away
      }
      ::close(c);
    }
  }

  // --- units ---
  StatusOr<BlobRef> Upload(const std::string& path) {
    // A hard link keeps the bytes of this version even if the worker replaces the file.
    const std::string snap = path + ".upload";
    ::unlink(snap.c_str());
    if (::link(path.c_str(), snap.c_str()) != 0) return ErrnoError("link " + path, errno);
    StatusOr<BlobRef> ref = api->UploadFile(snap);
    ::unlink(snap.c_str());
    return ref;
  }

  Status Fetch(const std::string& dir, const std::string& name, const BlobRef& ref) {
    const std::string cached = o.work_dir + "/blobs/" + ref.sha256;
    if (!Exists(cached)) {
      IDLEGRID_RETURN_IF_ERROR(api->DownloadBlob(ref, cached));
      Update([&](NodeStatus& s) {
        s.bytes_downloaded += ref.size;
        if (name == "image" || name == "labels" || name == "volume") s.data_bytes_downloaded += ref.size;
      });
    }
    const std::string dest = dir + "/inputs/" + name;
    ::unlink(dest.c_str());
    if (::link(cached.c_str(), dest.c_str()) != 0) return ErrnoError("link " + dest, errno);
    return Status::Ok();
  }

  // For the tray and the screensaver: the middle slice of a finished slab, input beside output.
  void WritePreview(const std::string& dir, const SignedUnit& env) {
    if (!env.unit.slab) return;
    const bool denoised = Exists(dir + "/outputs/denoised.tif");
    const std::string out_path = dir + (denoised ? "/outputs/denoised.tif" : "/outputs/labels.tif");
    StatusOr<TiffInfo> out_info = ProbeTiff(out_path);
    if (!out_info.ok() || out_info->shape.z == 0) return;
    const int64_t mid = out_info->shape.z / 2;
    TiffReadOptions one;  // the middle slice alone, not the slab
    one.z_begin = mid;
    one.z_end = mid + 1;
    StatusOr<Volume> out = ReadTiff(out_path, one);
    if (!out.ok()) return;
    TiffReadOptions r;
    // The input holds the slab's slices alone when it has a region, else the whole volume.
    r.z_begin = env.unit.slab->z_begin + mid - (env.unit.region ? env.unit.slab->read_begin() : 0);
    r.z_end = r.z_begin + 1;
    StatusOr<Volume> in = ReadTiff(dir + "/inputs/volume", r);
    if (!in.ok() || in->shape().y != out->shape().y || in->shape().x != out->shape().x) return;
    const int64_t w = in->shape().x, h = in->shape().y;
    std::vector<uint8_t> left = GraySlice(*in, 0), right;
    if (denoised) {
      right = GraySlice(*out, 0);
    } else {
      right = left;
      OverlayLabels(*out, 0, 0.5, &right);
    }
    std::vector<uint8_t> both(static_cast<size_t>(2 * w * h * 3));
    for (int64_t y = 0; y < h; ++y) {
      std::copy(left.begin() + y * w * 3, left.begin() + (y + 1) * w * 3, both.begin() + y * 2 * w * 3);
      std::copy(right.begin() + y * w * 3, right.begin() + (y + 1) * w * 3, both.begin() + (y * 2 * w + w) * 3);
    }
    const std::string path = o.work_dir + "/preview.png";
    if (WritePngRgb(path, 2 * w, h, both).ok()) Update([&](NodeStatus& s) { s.preview = path; });
  }

  // Uploads what the worker left and completes (exit 0), or gives the unit back.
  void Finish(const std::string& dir, const SignedUnit& env, int code, const std::string& reason,
              bool cancelled, double elapsed, double peak_rss_mib = 0) {
    if (cancelled) {
      api->Abort(env.lease_id, "stopped: the server said abort", false, std::nullopt).IgnoreError();
      Update([](NodeStatus& s) { ++s.units_given_back; });
      RemoveTree(dir);
      return;
    }
    if (code == 0) {
      WriteFileAtomic(dir + "/state.json", R"({"phase":"uploading"})", 0600).IgnoreError();
      WritePreview(dir, env);
      Update([](NodeStatus& s) { s.state = "uploading"; });
      Result r;
      r.lease_id = env.lease_id;
      r.unit_id = env.unit.unit_id;
      r.node_id = id.node_id;
      r.elapsed_s = elapsed;
      r.epochs_done = env.unit.epochs ? env.unit.epochs->end : 0;
      if (peak_rss_mib > 0) r.metrics["worker_peak_rss_mib"] = peak_rss_mib;
      for (const auto& [file, name] : kOutputs) {
        const std::string path = dir + "/outputs/" + file;
        if (!Exists(path)) continue;
        StatusOr<BlobRef> ref = Upload(path);
        if (!ref.ok()) return Error("upload of " + std::string(file) + " failed (kept for later): " + ref.status().message());
        r.outputs[name] = *ref;
      }
      Status done = api->Complete(r);
      if (!done.ok() && done.code() == StatusCode::kUnavailable) {
        return Error("completing " + env.unit.unit_id + " failed (kept for later): " + done.message());
      }
      if (!done.ok()) Error("the server refused the result of " + env.unit.unit_id + ": " + done.message());
      Update([&](NodeStatus& s) { done.ok() ? ++s.units_done : ++s.units_failed; });
      RemoveTree(dir);
      return;
    }
    if (code == 75) {  // interrupted: the checkpoint is where the next node resumes
      std::optional<BlobRef> checkpoint;
      const std::string path = dir + "/outputs/checkpoint.pt";
      if (Exists(path)) {
        StatusOr<BlobRef> ref = Upload(path);
        if (ref.ok()) checkpoint = *ref;
      }
      Status aborted = api->Abort(env.lease_id, reason.empty() ? "stopped on this node" : reason, false, checkpoint);
      if (!aborted.ok()) Error("abort of " + env.unit.unit_id + ": " + aborted.message());
      Update([](NodeStatus& s) { ++s.units_given_back; });
      RemoveTree(dir);
      return;
    }
    const std::string why = "worker exit " + std::to_string(code) + (reason.empty() ? "" : ": " + reason);
    Error(env.unit.unit_id + " failed: " + why);
    api->Abort(env.lease_id, why, true, std::nullopt).IgnoreError();
    Update([](NodeStatus& s) { ++s.units_failed; });
    RemoveTree(dir);
  }

  // A unit left by an earlier run of the daemon: finish its uploads, or give it back.
  void ResumePending() {
    DIR* d = opendir(o.work_dir.c_str());
    if (d == nullptr) return;
    std::vector<std::string> dirs;
    for (dirent* e = readdir(d); e != nullptr; e = readdir(d)) {
      if (e->d_name[0] == 'l') dirs.push_back(o.work_dir + "/" + e->d_name);
    }
    closedir(d);
    for (const std::string& dir : dirs) {
      StatusOr<std::string> text = ReadFile(dir + "/envelope.json", 4 << 20);
      StatusOr<std::string> state = ReadFile(dir + "/state.json", 4096);
      StatusOr<SignedUnit> env = text.ok() ? ParseMessage<SignedUnit>(*text) : StatusOr<SignedUnit>(text.status());
      if (!env.ok() || !state.ok()) {
        RemoveTree(dir);
        continue;
      }
      const bool uploading = state->find("uploading") != std::string::npos;
      IDLEGRID_LOG(kInfo) << "resuming " << env->unit.unit_id << " left by an earlier run ("
                          << (uploading ? "upload results" : "give back from its checkpoint") << ")";
      Finish(dir, *env, uploading ? 0 : 75, "the node restarted", false, 0);
    }
  }

  void RunUnit(const std::string& text) {
    VerifyOptions vo;
    vo.node_id = id.node_id;
    vo.now = UnixNow();
    vo.replay = &replay;
    StatusOr<SignedUnit> verified = VerifyUnit(text, *pinned, vo);
    if (!verified.ok()) {
      Error("refused a unit: " + verified.status().ToString());
      Update([](NodeStatus& s) { ++s.refused; });
      // Give the lease back if it names one of ours; a forgery changes nothing by this.
      StatusOr<SignedUnit> parsed = ParseMessage<SignedUnit>(text);
      if (parsed.ok() && parsed->node_id == id.node_id) {
        api->Abort(parsed->lease_id, "refused: " + verified.status().message(), true, std::nullopt).IgnoreError();
      }
      return;
    }
    const SignedUnit& env = *verified;
    const std::string dir = o.work_dir + "/" + env.lease_id;
    Status prep = MakeDirs(dir + "/inputs", 0700);
    if (prep.ok()) prep = MakeDirs(dir + "/outputs", 0700);
    if (prep.ok()) prep = WriteFileAtomic(dir + "/envelope.json", text, 0600);
    if (prep.ok()) prep = WriteFileAtomic(dir + "/state.json", R"({"phase":"running"})", 0600);
    if (prep.ok()) prep = WriteFileAtomic(dir + "/unit.json", env.unit.ToJson().dump(), 0600);
    Update([&](NodeStatus& s) {
      s.state = "downloading";
      s.unit_id = env.unit.unit_id;
      s.job_id = env.unit.job_id;
      s.kind = UnitKindName(env.unit.kind);
      s.progress = 0;
      s.epoch = env.unit.epochs ? env.unit.epochs->begin : 0;
    });
    for (const auto& [name, ref] : env.unit.inputs) {
      if (!prep.ok()) break;
      prep = Fetch(dir, name, ref);
      if (!prep.ok()) prep = Status(prep.code(), "input \"" + name + "\": " + prep.message());
    }
    if (!prep.ok()) {
      Error("refused " + env.unit.unit_id + ": " + prep.ToString());
      if (prep.code() == StatusCode::kDataLoss) Update([](NodeStatus& s) { ++s.refused; });
      api->Abort(env.lease_id, "node could not fetch inputs: " + prep.message(), prep.code() == StatusCode::kDataLoss,
                 std::nullopt).IgnoreError();
      RemoveTree(dir);
      return;
    }
    RunWorker(dir, env);
  }

  void RunWorker(const std::string& dir, const SignedUnit& env) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return Error("pipe failed");
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setpriority(PRIO_PROCESS, 0, o.nice);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // the daemon died: checkpoint and stop
      ::dup2(out[1], 1);
      const int log = ::open((dir + "/worker.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (log >= 0) ::dup2(log, 2);
      signal(SIGTERM, SIG_DFL);
      signal(SIGINT, SIG_DFL);
      // Blocked until the worker has its handler (it unblocks them): a stop that arrives
      // while it still loads becomes a checkpoint, not a kill.
      sigset_t stop_signals;
      sigemptyset(&stop_signals);
      sigaddset(&stop_signals, SIGTERM);
      sigaddset(&stop_signals, SIGINT);
      sigprocmask(SIG_SETMASK, &stop_signals, nullptr);
      const std::string unit = dir + "/unit.json", in = dir + "/inputs", outs = dir + "/outputs";
      const char* argv[] = {o.worker.c_str(), "run", unit.c_str(), "--inputs", in.c_str(), "--outputs", outs.c_str(), nullptr};
      ::execve(o.worker.c_str(), const_cast<char* const*>(argv), environ);
      ::_exit(127);
    }
    ::close(out[1]);
    if (pid < 0) {
      ::close(out[0]);
      return Error("fork failed");
    }
    const auto started = Clock::now();
    Update([&](NodeStatus& s) {
      s.state = "working";
      s.worker_pid = pid;
    });
    std::string buffer, reason;
    bool eof = false, suspended = false, terminated = false, cancelled = false;
    std::optional<BlobRef> checkpoint;
    int64_t checkpoint_epoch = env.unit.epochs ? env.unit.epochs->begin : 0;
    bool beat_now = false;
    std::map<std::string, double> metrics;
    auto last_beat = Clock::now(), suspended_at = Clock::now(), term_at = Clock::now();
    auto terminate = [&](const std::string& why) {
      if (terminated) return;
      terminated = true;
      term_at = Clock::now();
      if (reason.empty()) reason = why;
      ::kill(pid, SIGCONT);
      ::kill(pid, SIGTERM);
    };
    for (int64_t iter = 0; !eof && iter < (int64_t{1} << 40); ++iter) {
      pollfd p{out[0], POLLIN, 0};
      if (::poll(&p, 1, 100) > 0) {
        char buf[4096];
        const ssize_t n = ::read(out[0], buf, sizeof(buf));
        if (n <= 0) {
          eof = true;
        } else {
          buffer.append(buf, static_cast<size_t>(n));
        }
      }
      for (size_t nl = buffer.find('\n'); nl != std::string::npos; nl = buffer.find('\n')) {
        StatusOr<Json> ev = ParseJson(buffer.substr(0, nl));
        buffer.erase(0, nl + 1);
        if (!ev.ok() || !ev->is_object() || !ev->contains("event")) continue;
        const std::string kind = (*ev)["event"].is_string() ? (*ev)["event"].get<std::string>() : "";
        if (kind == "progress") {
          Update([&](NodeStatus& s) {
            s.progress = ev->value("fraction", s.progress);
            s.epoch = ev->value("epoch", s.epoch);
          });
        } else if (kind == "epoch") {
          // The latest validation score; refit epochs (-1) validate nothing and keep it.
          if (ev->contains("mean_dice") && (*ev)["mean_dice"].is_number() && (*ev)["mean_dice"].get<double>() >= 0) {
            metrics["mean_dice"] = (*ev)["mean_dice"];
          }
          if (ev->contains("train_loss") && (*ev)["train_loss"].is_number()) metrics["train_loss"] = (*ev)["train_loss"];
        } else if (kind == "checkpoint" && !terminated) {
          StatusOr<BlobRef> ref = Upload(dir + "/outputs/checkpoint.pt");
          if (ref.ok()) {
            checkpoint = *ref;
            checkpoint_epoch = ev->value("epoch", checkpoint_epoch);
            beat_now = true;
          } else {
            Error("checkpoint upload failed: " + ref.status().message());
          }
        } else if (kind == "error") {
          reason = ev->value("message", std::string("worker error"));
        }
      }
      // The user, the tray, the server or the daemon's own stop.
      if (self.stop_.load()) terminate("the node is shutting down");
      if (!terminated) {
        if (!suspended && ShouldSuspend()) {
          ::kill(pid, SIGSTOP);
          suspended = true;
          suspended_at = Clock::now();
          Update([&](NodeStatus& s) { s.state = self.paused_.load() ? "paused" : "suspended"; });
        } else if (suspended && CanResume()) {
          ::kill(pid, SIGCONT);
          suspended = false;
          Update([](NodeStatus& s) { s.state = "working"; });
        } else if (suspended && Clock::now() - suspended_at > std::chrono::seconds(o.policy.grace_s)) {
          terminate(self.paused_.load() ? "paused on this node" : "the user of this node came back");
        }
      }
      if (terminated && Clock::now() - term_at > std::chrono::seconds(30)) ::kill(pid, SIGKILL);
      if (beat_now || Clock::now() - last_beat > std::chrono::seconds(o.heartbeat_s)) {
        beat_now = false;
        last_beat = Clock::now();
        Heartbeat hb;
        hb.lease_id = env.lease_id;
        hb.node_id = id.node_id;
        {
          std::lock_guard<std::mutex> lock(mu);
          hb.progress = std::clamp(st.progress, 0.0, 1.0);
          hb.message = st.state;
        }
        hb.epoch = checkpoint_epoch;
        hb.checkpoint = checkpoint;
        hb.metrics = metrics;
        StatusOr<HeartbeatReply> reply = api->Beat(hb);
        if (reply.ok() && reply->action == HeartbeatAction::kAbort) {
          cancelled = true;
          terminate("the server said abort: " + reply->reason);
        } else if (!reply.ok()) {
          Error("heartbeat: " + reply.status().message());
        }
      }
    }
    ::close(out[0]);
    int status = 0;
    struct rusage usage {};
    for (int i = 0; i < 60 * 100; ++i) {  // bounded: the worker closed stdout, it is exiting
      if (::wait4(pid, &status, WNOHANG, &usage) == pid) break;
      if (i == 30 * 100) ::kill(pid, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    Update([](NodeStatus& s) { s.worker_pid = 0; });
    const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
    const double peak_rss_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss: KiB
    Update([&](NodeStatus& s) { s.worker_peak_rss_mib = peak_rss_mib; });
    Finish(dir, env, code, reason, cancelled, elapsed, peak_rss_mib);
    Update([](NodeStatus& s) {
      s.unit_id.clear();
      s.job_id.clear();
      s.kind.clear();
      s.progress = 0;
    });
  }
};

NodeDaemon::NodeDaemon(NodeIdentity identity, NodeOptions options)
    : impl_(std::make_unique<Impl>(*this, std::move(identity), std::move(options))) {}

NodeDaemon::~NodeDaemon() {
  Stop();
  if (impl_->socket_thread.joinable()) impl_->socket_thread.join();
  if (impl_->listen_fd >= 0) {
    ::close(impl_->listen_fd);
    ::unlink(impl_->o.status_socket.c_str());
  }
}

NodeStatus NodeDaemon::status() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->st;
}

NodeInfo NodeDaemon::Capabilities() {
  Impl& m = *impl_;
  NodeInfo info;
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  info.hostname = host;
  utsname u{};
  if (::uname(&u) == 0) info.os = std::string(u.sysname) + " " + u.release + " " + u.machine;
  info.version = "0.1.0";
  int64_t cores = std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()));
  if (m.o.policy.max_threads > 0) cores = std::min(cores, m.o.policy.max_threads);
  info.cores = cores;
  struct sysinfo si {};
  if (::sysinfo(&si) == 0) info.ram_bytes = static_cast<int64_t>(si.totalram) * si.mem_unit;
  if (m.o.policy.use_gpu && !m.o.devices.empty() && !m.gpus) {
    m.gpus.emplace();
    // idlegrid-devices prints what LibTorch sees; a CPU LibTorch reports no GPU.
    FILE* p = ::popen((m.o.devices + " 2>/dev/null").c_str(), "r");
    if (p != nullptr) {
      std::string text;
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) text.append(buf, n);
      ::pclose(p);
      StatusOr<Json> j = ParseJson(text);
      if (j.ok() && j->contains("gpus") && (*j)["gpus"].is_array()) {
        for (const Json& g : (*j)["gpus"]) {
          m.gpus->push_back({g.value("name", std::string("gpu")), g.value("memory_bytes", int64_t{0})});
        }
      }
    }
  }
  if (m.gpus && m.o.policy.use_gpu) info.gpus = *m.gpus;
  return info;
}

int NodeDaemon::Run() {
  Impl& m = *impl_;
  Status init = m.Init();
  if (init.ok()) init = m.StartSocket();
  if (!init.ok()) {
    m.Error(init.ToString());
    return 1;
  }
  m.ResumePending();
  const NodeInfo capabilities = Capabilities();  // host, cores, RAM, GPUs: fixed for a run
  int64_t poll_ms = m.o.poll_min_ms, units = 0;
  auto idle_since = Clock::now();
  for (int64_t iter = 0; !stop_.load() && iter < (int64_t{1} << 40); ++iter) {
    if (m.o.max_units > 0 && units >= m.o.max_units) break;
    std::string why;
    if (!m.Allowed(&why)) {
      m.Update([&](NodeStatus& s) {
        s.state = why == "paused" ? "paused" : "waiting";
        s.message = why;
      });
      SleepFor(500, stop_);
      continue;
    }
    StatusOr<std::optional<std::string>> lease = m.api->Lease(capabilities);
    if (!lease.ok()) {
      m.Error("lease: " + lease.status().message());
      if (lease.status().code() == StatusCode::kUnauthenticated) return 1;  // revoked
      SleepFor(poll_ms, stop_);
      poll_ms = std::min(poll_ms * 2, m.o.poll_max_ms);
      continue;
    }
    if (!*lease) {
      m.Update([](NodeStatus& s) {
        s.state = "idle";
        s.message = "no work";
      });
      if (m.o.exit_when_idle_s > 0 && Clock::now() - idle_since > std::chrono::seconds(m.o.exit_when_idle_s)) break;
      SleepFor(poll_ms, stop_);
      poll_ms = std::min(poll_ms * 2, m.o.poll_max_ms);
      continue;
    }
    poll_ms = m.o.poll_min_ms;
    m.RunUnit(**lease);
    ++units;
    idle_since = Clock::now();
  }
  m.Update([](NodeStatus& s) { s.state = "stopped"; });
  return 0;
}

StatusOr<Json> QueryNode(const std::string& socket_path, const std::string& command) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int e = errno;
    ::close(fd);
    return UnavailableError("no node daemon at " + socket_path + ": " + std::strerror(e));
  }
  const std::string line = command + "\n";
  if (::write(fd, line.data(), line.size()) < 0) {
    ::close(fd);
    return UnavailableError("cannot talk to the node daemon");
  }
  std::string reply;
  char buf[4096];
  pollfd p{fd, POLLIN, 0};
  for (int i = 0; i < 100 && ::poll(&p, 1, 2000) > 0; ++i) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return ParseJson(reply);
}

}  // namespace idlegrid::client
