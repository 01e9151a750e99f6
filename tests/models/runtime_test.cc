#include "idlegrid/models/runtime.h"

#include <catch2/catch.hpp>
#include <torch/torch.h>

namespace idlegrid::models {
namespace {

TEST_CASE("the CPU runtime takes the requested thread count", "[models]") {
  ConfigureCpuRuntime(2);
  CHECK(ProbeDevices().cpu_threads == 2);
  ConfigureCpuRuntime(1);
  DeviceReport r = ProbeDevices();
  CHECK(r.cpu_threads == 1);
  CHECK(r.torch_version.rfind("1.", 0) == 0);
  CHECK(r.cuda_available == !r.cuda_devices.empty());
  CHECK(static_cast<int64_t>(r.cuda_devices.size()) == static_cast<int64_t>(torch::cuda::device_count()));
  ConfigureCpuRuntime(0);  // clamped, not an error
  CHECK(ProbeDevices().cpu_threads == 1);
}

}  // namespace
}  // namespace idlegrid::models
