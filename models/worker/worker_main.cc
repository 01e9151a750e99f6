// idlegrid-worker: runs one work unit (see idlegrid/models/worker.h for the contract).
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "idlegrid/models/worker.h"

namespace {

std::atomic<bool> g_stop{false};

extern "C" void OnSignal(int) { g_stop.store(true); }

int Usage() {
  std::fprintf(stderr, "usage: idlegrid-worker run UNIT.json --inputs DIR --outputs DIR\n");
  return idlegrid::models::kWorkerUsage;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "run") != 0) return Usage();
  idlegrid::models::WorkerArgs args;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--inputs" && i + 1 < argc) {
      args.inputs_dir = argv[++i];
    } else if (a == "--outputs" && i + 1 < argc) {
      args.outputs_dir = argv[++i];
    } else if (args.unit_path.empty() && a.rfind("--", 0) != 0) {
      args.unit_path = a;
    } else {
      return Usage();
    }
  }
  if (args.unit_path.empty() || args.inputs_dir.empty() || args.outputs_dir.empty()) return Usage();
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  // A parent may start us with SIGTERM/SIGINT blocked (idlegrid-node does), so that a stop
  // requested while we were still loading waits for the handler instead of killing us.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_UNBLOCK, &stop_signals, nullptr);
  args.stop = &g_stop;
  args.events = stdout;
  return idlegrid::models::RunWorkUnit(args);
}
