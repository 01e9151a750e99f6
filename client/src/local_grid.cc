#include "idlegrid/client/local_grid.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "idlegrid/client/node.h"
#include "idlegrid/shared/files.h"

extern char** environ;

namespace idlegrid::client {

StatusOr<std::unique_ptr<LocalGrid>> LocalGrid::Start(const std::string& dir, const std::string& bin,
                                                      server::ServerOptions options, bool fresh,
                                                      std::function<void(int64_t, int64_t)> on_transfer) {
  std::unique_ptr<LocalGrid> g(new LocalGrid());
  g->dir_ = dir;
  g->bin_ = bin;
  std::error_code ec;
  if (fresh) std::filesystem::remove_all(dir, ec);
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  options.data_dir = dir + "/server";
  options.host = "127.0.0.1";
  options.port = 0;
  IDLEGRID_ASSIGN_OR_RETURN(g->server_, server::Server::Create(options));
  IDLEGRID_RETURN_IF_ERROR(g->server_->Start());
  HttpClientOptions h;
  h.base_url = g->server_->url();
  h.pinned_cert_sha256 = g->server_->fingerprint();
  h.on_progress = std::move(on_transfer);
  // Tokens: printed at the first start, kept in the data dir for later ones.
  auto token = [&](const std::string& first, const std::string& file) -> StatusOr<std::string> {
    if (!first.empty()) return first;
    IDLEGRID_ASSIGN_OR_RETURN(std::string text, ReadFile(options.data_dir + "/" + file, 4096));
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
  };
  IDLEGRID_ASSIGN_OR_RETURN(h.bearer_token, token(g->server_->first_start().admin_token, "admin.token"));
  IDLEGRID_ASSIGN_OR_RETURN(g->enroll_token_, token(g->server_->first_start().enroll_token, "enroll.token"));
  IDLEGRID_ASSIGN_OR_RETURN(g->admin_, ApiClient::Create(h));
  return g;
}

LocalGrid::~LocalGrid() {
  StopNodes();
  if (server_) server_->Stop();
}

StatusOr<std::string> LocalGrid::AddNode(int64_t threads, const std::vector<std::string>& extra_args) {
  Node n;
  n.home = dir_ + "/node" + std::to_string(nodes_.size() + 1);
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(n.home + "/config", 0700));
  NodeInfo info;
  info.hostname = "local-node-" + std::to_string(nodes_.size() + 1);
  info.os = "Linux";
  info.version = "0.1.0";
  info.cores = threads;
  IDLEGRID_ASSIGN_OR_RETURN(NodeIdentity id, Enroll(server_->url(), enroll_token_, server_->fingerprint(), info));
  IDLEGRID_RETURN_IF_ERROR(SaveIdentity(n.home + "/config/node.json", id));
  n.id = id.node_id;
  const std::vector<std::string> env{"IDLEGRID_CONFIG_DIR=" + n.home + "/config",
                                     "IDLEGRID_CACHE_DIR=" + n.home + "/cache",
                                     "IDLEGRID_DATA_DIR=" + n.home + "/data"};
  std::vector<std::string> args{bin_ + "/idlegrid-node", "run", "--threads", std::to_string(threads), "--exit-with-parent"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  const std::string log = n.home + "/node.log";
  std::fflush(nullptr);  // or the child's freopen would write our buffered output again
  n.pid = ::fork();
  if (n.pid == 0) {
    for (const std::string& e : env) ::putenv(const_cast<char*>(e.c_str()));
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    if (f != nullptr) ::dup2(::fileno(f), 2);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execve(argv[0], argv.data(), environ);
    ::_exit(127);
  }
  if (n.pid < 0) return InternalError("fork failed");
  nodes_.push_back(n);
  return n.id;
}

void LocalGrid::StopNodes() {
  for (Node& n : nodes_) {
    if (n.pid > 0) ::kill(n.pid, SIGTERM);
  }
  for (Node& n : nodes_) {
    if (n.pid <= 0) continue;
    int status = 0;
    bool gone = false;
    for (int i = 0; i < 6000 && !gone; ++i) {  // up to 60 s: a unit is being given back
      gone = ::waitpid(n.pid, &status, WNOHANG) == n.pid;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!gone) {
      ::kill(n.pid, SIGKILL);
      ::waitpid(n.pid, &status, 0);
    }
    n.pid = -1;
  }
  nodes_.clear();
}

}  // namespace idlegrid::client
