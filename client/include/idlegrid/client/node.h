// The compute node: enrolls with a work server, leases signed units, runs each with
// idlegrid-worker as a child process, relays progress and checkpoints, and gives work back
// whenever it must stop, so that nothing is lost.
//
// A unit on this node (work_dir/<lease id>/):
//   envelope.json   the signed envelope as received (verified before anything else)
//   state.json      {"phase": "running" | "uploading"}: survives a restart of the daemon
//   inputs/ outputs/  the worker's folders; unit.json
// Phases: verify the envelope (signature by the pinned key, this node, expiry, no replay)
// -> download inputs (SHA-256 and size checked, resumed) -> run the worker (nice 10, thread
// count from the unit, SIGTERM if the daemon dies) -> on every "checkpoint" event: upload it
// and report it in the next heartbeat -> exit 0: upload outputs, complete; exit 75: abort
// with the last checkpoint; other exits: abort as failed with the worker's message.
// Anything refused (bad signature, wrong hash) runs nothing and is logged with its reason.
#ifndef IDLEGRID_CLIENT_NODE_H_
#define IDLEGRID_CLIENT_NODE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "idlegrid/client/idle.h"
#include "idlegrid/shared/json.h"
#include "idlegrid/shared/protocol.h"
#include "idlegrid/shared/status.h"

namespace idlegrid::client {

// What enrollment stores (config_dir/node.json, mode 0600).
struct NodeIdentity {
  std::string server;          // https://host:port
  std::string fingerprint;     // pinned TLS certificate
  std::string node_id;
  std::string secret;
  std::string public_key_pem;  // pinned unit-signing key
  Json ToJson() const;
  static StatusOr<NodeIdentity> FromJson(const Json& j);
};

StatusOr<NodeIdentity> Enroll(const std::string& server, const std::string& token,
                              const std::string& fingerprint, const NodeInfo& info);
Status SaveIdentity(const std::string& path, const NodeIdentity& id);
StatusOr<NodeIdentity> LoadIdentity(const std::string& path);

// When this machine may compute.
struct NodePolicy {
  enum class Mode { kAlways, kIdle, kWindows };
  Mode mode = Mode::kAlways;
  int64_t idle_after_s = 300;  // kIdle: the user has been idle this long
  int64_t grace_s = 60;        // suspended this long by user activity: give the unit back
  // kWindows: local times "HH:MM-HH:MM" (may wrap past midnight), any of which allows work.
  std::vector<std::string> windows;
  int64_t max_threads = 0;     // 0: all cores
  bool use_gpu = true;

  Json ToJson() const;
  static StatusOr<NodePolicy> FromJson(const Json& j);
};
// True when `minute_of_day` (0..1439) is inside the "HH:MM-HH:MM" window; INVALID_ARGUMENT
// for a malformed window.
StatusOr<bool> InWindow(const std::string& window, int minute_of_day);

struct NodeOptions {
  std::string worker;             // path of idlegrid-worker
  std::string devices;            // path of idlegrid-devices (GPU report); empty: none
  std::string work_dir;           // where units run (cache dir)
  std::string status_socket;      // Unix socket for the tray and screensaver; empty: none
  NodePolicy policy;
  IdleSource* idle = nullptr;     // required for Mode::kIdle
  int64_t heartbeat_s = 10;
  int64_t poll_min_ms = 1000, poll_max_ms = 30000;  // lease polling backoff when no work
  int64_t max_units = 0;          // stop after this many units (0: no limit)
  int64_t exit_when_idle_s = 0;   // stop after this long without work (0: never)
  int nice = 10;
};

// Counters and the current unit, as the status socket reports them.
struct NodeStatus {
  std::string state = "starting";  // waiting | idle | working | paused | suspended | uploading | stopped
  std::string unit_id, job_id, kind, message, last_error;
  std::string preview;  // PNG of the last inference result (input | output, middle slice)
  double progress = 0;
  int64_t epoch = 0;
  int64_t worker_pid = 0;
  int64_t units_done = 0, units_failed = 0, units_given_back = 0, refused = 0;
  int64_t bytes_downloaded = 0;     // inputs fetched from the server (cache hits excluded)
  int64_t data_bytes_downloaded = 0;  // of which volume data ("image", "labels", "volume")
  double worker_peak_rss_mib = 0;   // the last worker's peak resident memory
  Json ToJson() const;
};

class NodeDaemon {
 public:
  NodeDaemon(NodeIdentity identity, NodeOptions options);
  ~NodeDaemon();
  NodeDaemon(const NodeDaemon&) = delete;
  NodeDaemon& operator=(const NodeDaemon&) = delete;

  // Runs until Stop(), max_units or exit_when_idle; returns 0, or 1 on a fatal error (bad
  // identity, worker missing). A unit in progress at Stop() is checkpointed and given back.
  int Run();
  // Thread- and async-signal-safe: sets a flag the loops poll.
  void Stop() { stop_.store(true); }
  void Pause(bool paused) { paused_.store(paused); }
  NodeStatus status() const;
  // What this node reports to the server (cores capped by the policy, RAM, GPUs).
  NodeInfo Capabilities();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
};

// Asks a running daemon over its status socket: "status", "pause" or "resume". Returns
// its JSON reply.
StatusOr<Json> QueryNode(const std::string& socket_path, const std::string& command);

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_NODE_H_
