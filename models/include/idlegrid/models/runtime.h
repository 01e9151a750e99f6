// The LibTorch runtime of a process: which devices it can use, and the CPU settings every
// worker applies before training (thread count, allocator behaviour).
// This header does not include LibTorch, so any code may use it cheaply.
#ifndef IDLEGRID_MODELS_RUNTIME_H_
#define IDLEGRID_MODELS_RUNTIME_H_

#include <cstdint>
#include <string>
#include <vector>

namespace idlegrid::models {

struct CudaDevice {
  int index = 0;
  std::string name;
  int64_t memory_bytes = 0;
};

struct DeviceReport {
  std::string torch_version;  // e.g. "1.13.1"
  bool cuda_available = false;
  std::vector<CudaDevice> cuda_devices;
  int cpu_threads = 1;        // LibTorch intra-op threads now in effect
};

// Asks LibTorch which devices exist. Thread-safe.
DeviceReport ProbeDevices();

// Sets LibTorch's intra- and inter-op thread counts to `threads` (>= 1) and makes glibc's
// malloc keep freed memory instead of returning it to the OS on every large free, which
// otherwise makes LibTorch training several times slower (page faults on every step).
// Call once, early, before any tensor work; results on CPU depend on the thread count.
void ConfigureCpuRuntime(int threads);

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_RUNTIME_H_
