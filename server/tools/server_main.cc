// idlegrid-server --data DIR [--listen ADDR:PORT] [--cert F --key F]
//
// The work server. At first start it creates DIR with a self-signed TLS certificate (unless
// --cert/--key are given), the Ed25519 unit-signing key, an admin token and an enrollment
// token, and prints how to reach it. SIGTERM or SIGINT: stops accepting, finishes requests
// in flight and exits 0 (every state change was already committed).
#include <signal.h>

#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>

#include "idlegrid/server/server.h"
#include "idlegrid/shared/log.h"

int main(int argc, char** argv) {
  using namespace idlegrid;
  CLI::App app{"idlegrid work server"};
  server::ServerOptions o;
  std::string listen = "127.0.0.1:8443";
  app.add_option("--data", o.data_dir, "data directory (created at first start)")->required();
  app.add_option("--listen", listen, "address:port to listen on (port 0: any free port)");
  app.add_option("--cert", o.cert_file, "TLS certificate (PEM); default: self-signed in DATA/tls");
  app.add_option("--key", o.key_file, "TLS private key (PEM) for --cert");
  app.add_option("--name", o.public_name, "host name nodes use, added to the self-signed certificate");
  app.add_option("--threads", o.threads, "request threads")->check(CLI::Range(2, 256));
  app.add_option("--lease-seconds", o.queue.lease_seconds, "lease deadline, renewed by heartbeats")->check(CLI::Range(5, 86400));
  app.add_option("--unit-threads", o.queue.unit_threads, "CPU threads per unit")->check(CLI::Range(1, 256));
  app.add_option("--unit-seconds", o.queue.unit_target_seconds, "target length of a training unit")->check(CLI::Range(1, 86400));
  app.add_option("--slab-voxels", o.queue.slab_target_voxels, "target voxels of an inference slab")->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  app.add_option("--min-slabs", o.queue.min_slabs, "inference slabs a volume becomes at least (when halos allow)")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  CLI11_PARSE(app, argc, argv);

  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "--listen wants ADDRESS:PORT, e.g. 0.0.0.0:8443\n");
    return 2;
  }
  o.host = listen.substr(0, colon);
  try {
    o.port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    o.port = -1;
  }
  if (o.port < 0 || o.port > 65535) {
    std::fprintf(stderr, "--listen: bad port in %s\n", listen.c_str());
    return 2;
  }

  // Signals go to one waiting thread, not to whichever thread they hit.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  StatusOr<std::unique_ptr<server::Server>> s = server::Server::Create(o);
  if (!s.ok()) {
    std::fprintf(stderr, "idlegrid-server: %s\n", s.status().ToString().c_str());
    return 1;
  }
  server::Server& srv = **s;
  Status st = srv.Start();
  if (!st.ok()) {
    std::fprintf(stderr, "idlegrid-server: %s\n", st.ToString().c_str());
    return 1;
  }
  const server::FirstStart& first = srv.first_start();
  std::printf("idlegrid-server listening on %s\n", srv.url().c_str());
  std::printf("  certificate fingerprint: %s\n", srv.fingerprint().c_str());
  std::printf("  data: %s\n", srv.data_dir().c_str());
  if (!first.admin_token.empty()) {
    std::printf("  admin token (also in %s/admin.token): %s\n", srv.data_dir().c_str(), first.admin_token.c_str());
    std::printf("  enrollment token (also in %s/enroll.token): %s\n", srv.data_dir().c_str(), first.enroll_token.c_str());
  } else {
    std::printf("  tokens: %s/admin.token, %s/enroll.token\n", srv.data_dir().c_str(), srv.data_dir().c_str());
  }
  std::printf("enroll a node:\n  idlegrid-node enroll --server %s --fingerprint %s --token $(cat %s/enroll.token)\n",
              srv.url().c_str(), srv.fingerprint().c_str(), srv.data_dir().c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&set, &sig);
  std::printf("idlegrid-server: signal %d, shutting down\n", sig);
  std::fflush(stdout);
  srv.Stop();
  return 0;
}
