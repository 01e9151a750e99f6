#include "idlegrid/models/runtime.h"

#include <malloc.h>

#include <torch/torch.h>

#if __has_include(<cuda_runtime_api.h>) && defined(IDLEGRID_WITH_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define IDLEGRID_HAVE_CUDA_API 1
#endif

namespace idlegrid::models {

DeviceReport ProbeDevices() {
  DeviceReport r;
  r.torch_version = std::to_string(TORCH_VERSION_MAJOR) + "." +
                    std::to_string(TORCH_VERSION_MINOR) + "." +
                    std::to_string(TORCH_VERSION_PATCH);
  r.cpu_threads = torch::get_num_threads();
  r.cuda_available = torch::cuda::is_available();
  if (r.cuda_available) {
    int count = static_cast<int>(torch::cuda::device_count());
    for (int i = 0; i < count; ++i) {
      CudaDevice d;
      d.index = i;
      d.name = "cuda:" + std::to_string(i);
#ifdef IDLEGRID_HAVE_CUDA_API
      cudaDeviceProp prop{};
      if (cudaGetDeviceProperties(&prop, i) == cudaSuccess) {
        d.name = prop.name;
        d.memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
      }
#endif
      r.cuda_devices.push_back(d);
    }
  }
  return r;
}

void ConfigureCpuRuntime(int threads) {
  if (threads < 1) threads = 1;
  // Never hand large blocks back with munmap and keep up to 1 GiB of freed memory: LibTorch
  // frees and re-allocates the same large buffers every step.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  torch::set_num_threads(threads);
  static bool interop_set = false;  // may be set only once per process
  if (!interop_set) {
    interop_set = true;
    try {
      torch::set_num_interop_threads(threads);
    } catch (const c10::Error&) {
      // Already fixed by earlier parallel work; intra-op threads are what results depend on.
    }
  }
}

}  // namespace idlegrid::models
