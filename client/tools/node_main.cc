// idlegrid-node: makes this machine a compute node of a work server.
//
//   idlegrid-node enroll --server URL --fingerprint F --token T
//   idlegrid-node run [--policy always|idle|windows] [--idle-minutes N] [--window HH:MM-HH:MM]
//                     [--threads N] [--no-gpu] [--max-units N] [--exit-when-idle S]
//   idlegrid-node status | pause | resume      (asks the running daemon)
//
// Files (shared/config.h): the identity in CONFIG/node.json (0600), the policy in
// CONFIG/config.json under "policy" (flags override it), units under CACHE/units, the status
// socket at $XDG_RUNTIME_DIR/idlegrid-node.sock (else CACHE/node.sock).
// SIGTERM or SIGINT: the unit in progress is checkpointed, uploaded and given back; exit 0.
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <thread>

#include <CLI/CLI.hpp>

#include "idlegrid/client/node.h"
#include "idlegrid/shared/config.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/log.h"

namespace {

std::string SocketPath(const idlegrid::Paths& paths) {
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (runtime != nullptr && runtime[0] == '/' && std::getenv("IDLEGRID_CACHE_DIR") == nullptr) {
    return std::string(runtime) + "/idlegrid-node.sock";
  }
  return paths.cache_dir + "/node.sock";
}

int Fail(const idlegrid::Status& st) {
  std::fprintf(stderr, "idlegrid-node: %s\n", st.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace idlegrid;
  CLI::App app{"idlegrid-node: a compute node of an idlegrid work server"};
  app.require_subcommand(1);
  std::string server, token, fingerprint;
  auto* enroll = app.add_subcommand("enroll", "enroll this machine with a work server");
  enroll->add_option("--server", server, "server URL")->required();
  enroll->add_option("--token", token, "enrollment token")->required();
  enroll->add_option("--fingerprint", fingerprint, "the server certificate's SHA-256 fingerprint")->required();

  auto* run = app.add_subcommand("run", "run units until stopped");
  std::string mode, worker, idle_file;
  std::vector<std::string> windows;
  int64_t idle_minutes = -1, threads = -1, max_units = 0, exit_when_idle = 0, grace = -1, heartbeat = 10;
  bool no_gpu = false;
  run->add_option("--policy", mode, "always, idle (only when the user is idle) or windows")
      ->check(CLI::IsMember({"always", "idle", "windows"}));
  run->add_option("--idle-minutes", idle_minutes, "idle this long before computing (policy idle)");
  run->add_option("--grace", grace, "seconds a unit may stay suspended before it is given back");
  run->add_option("--window", windows, "HH:MM-HH:MM local time (policy windows; repeatable)");
  run->add_option("--threads", threads, "use at most this many CPU threads");
  run->add_flag("--no-gpu", no_gpu, "do not use GPUs");
  run->add_option("--max-units", max_units, "exit after this many units (batch jobs)");
  run->add_option("--exit-when-idle", exit_when_idle, "exit after this many seconds without work");
  run->add_option("--worker", worker, "idlegrid-worker to run (default: next to this program)");
  run->add_option("--idle-file", idle_file, "read idle time from this file (\"active\", \"idle\" or ms)");
  run->add_option("--heartbeat", heartbeat, "seconds between heartbeats")->check(CLI::Range(1, 3600));
  bool with_parent = false;
  run->add_flag("--exit-with-parent", with_parent, "stop (giving work back) when the process that started this one ends");
  auto* status = app.add_subcommand("status", "what the running daemon is doing");
  auto* pause = app.add_subcommand("pause", "suspend the running daemon's work");
  auto* resume = app.add_subcommand("resume", "resume it");
  CLI11_PARSE(app, argc, argv);

  StatusOr<Paths> paths = ResolvePaths();
  if (!paths.ok()) return Fail(paths.status());
  const std::string identity_path = paths->config_dir + "/node.json";
  const std::string socket = SocketPath(*paths);

  if (enroll->parsed()) {
    Status dirs = EnsureDirs(*paths);
    if (!dirs.ok()) return Fail(dirs);
    client::NodeOptions none;
    client::NodeDaemon probe(client::NodeIdentity{}, none);
    StatusOr<client::NodeIdentity> id = client::Enroll(server, token, fingerprint, probe.Capabilities());
    if (!id.ok()) return Fail(id.status());
    Status st = client::SaveIdentity(identity_path, *id);
    if (!st.ok()) return Fail(st);
    std::printf("enrolled as %s with %s; identity in %s\n", id->node_id.c_str(), server.c_str(), identity_path.c_str());
    return 0;
  }
  if (status->parsed() || pause->parsed() || resume->parsed()) {
    const char* cmd = status->parsed() ? "status" : pause->parsed() ? "pause" : "resume";
    StatusOr<Json> reply = client::QueryNode(socket, cmd);
    if (!reply.ok()) return Fail(reply.status());
    std::printf("%s\n", reply->dump(2).c_str());
    return 0;
  }

  // run
  StatusOr<client::NodeIdentity> id = client::LoadIdentity(identity_path);
  if (!id.ok()) return Fail(id.status());
  StatusOr<Json> config = LoadConfig(paths->config_file());
  if (!config.ok()) return Fail(config.status());
  client::NodePolicy policy;
  if (config->contains("policy")) {
    StatusOr<client::NodePolicy> p = client::NodePolicy::FromJson((*config)["policy"]);
    if (!p.ok()) return Fail(p.status());
    policy = *p;
  }
  if (!mode.empty()) {
    policy.mode = mode == "always" ? client::NodePolicy::Mode::kAlways
                : mode == "idle"   ? client::NodePolicy::Mode::kIdle
                                   : client::NodePolicy::Mode::kWindows;
  }
  if (idle_minutes >= 0) policy.idle_after_s = idle_minutes * 60;
  if (grace >= 0) policy.grace_s = grace;
  if (!windows.empty()) policy.windows = windows;
  for (const std::string& w : policy.windows) {
    if (!client::InWindow(w, 0).ok()) return Fail(client::InWindow(w, 0).status());
  }
  if (threads >= 0) policy.max_threads = threads;
  if (no_gpu) policy.use_gpu = false;

  client::NodeOptions o;
  o.worker = worker.empty() ? ExecutableDir() + "/idlegrid-worker" : worker;
  o.devices = ExecutableDir() + "/idlegrid-devices";
  if (::access(o.devices.c_str(), X_OK) != 0) o.devices.clear();
  o.work_dir = paths->cache_dir + "/units";
  o.status_socket = socket;
  o.policy = policy;
  o.max_units = max_units;
  o.exit_when_idle_s = exit_when_idle;
  o.heartbeat_s = heartbeat;
  std::unique_ptr<client::IdleSource> idle =
      idle_file.empty() ? client::MakeDefaultIdleSource() : client::MakeFileIdleSource(idle_file);
  o.idle = idle.get();
  Status dirs = EnsureDirs(*paths);
  if (!dirs.ok()) return Fail(dirs);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  client::NodeDaemon daemon(*id, o);
  std::thread signals([&] {
    int sig = 0;
    sigwait(&set, &sig);
    daemon.Stop();
  });
  signals.detach();
  if (with_parent) {
    // A private grid's node (the wizard, the demo): when its parent is gone, however it
    // went, the node stops as on SIGTERM instead of computing for nobody.
    const pid_t parent = ::getppid();
    std::thread([&daemon, parent] {
      for (int64_t i = 0; i < (int64_t{1} << 40) && ::getppid() == parent; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
      daemon.Stop();
    }).detach();
  }
  std::printf("idlegrid-node %s: serving %s (policy %s, idle source %s, status %s)\n", id->node_id.c_str(),
              id->server.c_str(), policy.ToJson()["mode"].get<std::string>().c_str(),
              idle ? idle->name().c_str() : "none", socket.c_str());
  std::fflush(stdout);
  const int rc = daemon.Run();
  const client::NodeStatus s = daemon.status();
  std::printf("idlegrid-node: stopped; %lld units done, %lld given back, %lld failed, %lld refused%s%s\n",
              static_cast<long long>(s.units_done), static_cast<long long>(s.units_given_back),
              static_cast<long long>(s.units_failed), static_cast<long long>(s.refused),
              s.last_error.empty() ? "" : "; last error: ", s.last_error.c_str());
  return rc;
}
