// A private grid on this computer: an embedded work server on 127.0.0.1 plus local
// `idlegrid-node` processes, each with its own folders under `dir`. Used by the demo, the
// grid benchmark and the wizard's "this computer only" mode.
#ifndef IDLEGRID_CLIENT_LOCAL_GRID_H_
#define IDLEGRID_CLIENT_LOCAL_GRID_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "idlegrid/server/server.h"
#include "idlegrid/shared/api_client.h"

namespace idlegrid::client {

class LocalGrid {
 public:
  // Starts a server with its data dir under `dir`: a fresh one, or (fresh = false) the one
  // an earlier run left, with its jobs and models. `bin` holds idlegrid-node/-worker.
  // `on_transfer` (may be empty) is the admin client's progress of each upload and download
  // (HttpClientOptions::on_progress), called on the transferring thread.
  static StatusOr<std::unique_ptr<LocalGrid>> Start(const std::string& dir, const std::string& bin,
                                                    server::ServerOptions options = {}, bool fresh = true,
                                                    std::function<void(int64_t, int64_t)> on_transfer = {});
  ~LocalGrid();  // stops the nodes (SIGTERM, bounded wait) and the server
  LocalGrid(const LocalGrid&) = delete;
  LocalGrid& operator=(const LocalGrid&) = delete;

  // Enrolls and starts one more node process limited to `threads` CPU threads; its output
  // goes to dir/nodeN/node.log. Returns the node id.
  StatusOr<std::string> AddNode(int64_t threads, const std::vector<std::string>& extra_args = {});
  // SIGTERM to every node, then waits for them (bounded).
  void StopNodes();

  server::Server& server() { return *server_; }
  ApiClient& admin() { return *admin_; }
  size_t nodes() const { return nodes_.size(); }

 private:
  LocalGrid() = default;
  struct Node {
    std::string id, home;
    pid_t pid = -1;
  };
  std::string dir_, bin_, enroll_token_;
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<ApiClient> admin_;
  std::vector<Node> nodes_;
};

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_LOCAL_GRID_H_
