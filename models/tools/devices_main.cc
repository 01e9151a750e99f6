// idlegrid-devices: prints what LibTorch sees on this machine as JSON (one line), after
// applying the worker's CPU settings. Used by `idlegrid-node` capability reports and as a
// smoke test of a models-only build on GPU machines.
//   idlegrid-devices [--threads N] [--expect-threads N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "idlegrid/models/runtime.h"

int main(int argc, char** argv) {
  int threads = 1, expect = -1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--expect-threads") == 0 && i + 1 < argc) {
      expect = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: idlegrid-devices [--threads N] [--expect-threads N]\n");
      return 2;
    }
  }
  idlegrid::models::ConfigureCpuRuntime(threads);
  idlegrid::models::DeviceReport r = idlegrid::models::ProbeDevices();
  std::string gpus;
  for (const auto& d : r.cuda_devices) {
    if (!gpus.empty()) gpus += ",";
    gpus += "{\"index\":" + std::to_string(d.index) + ",\"name\":\"" + d.name +
            "\",\"memory_bytes\":" + std::to_string(d.memory_bytes) + "}";
  }
  std::printf("{\"torch\":\"%s\",\"cpu_threads\":%d,\"cuda\":%s,\"gpus\":[%s]}\n",
              r.torch_version.c_str(), r.cpu_threads, r.cuda_available ? "true" : "false",
              gpus.c_str());
  if (expect >= 0 && r.cpu_threads != expect) {
    std::fprintf(stderr, "expected %d threads, LibTorch uses %d\n", expect, r.cpu_threads);
    return 1;
  }
  return 0;
}
