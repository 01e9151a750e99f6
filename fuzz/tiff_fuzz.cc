// Fuzz target: the TIFF reader on arbitrary bytes (uploaded volumes are untrusted).
// Beyond "no crash", a volume that reads must have a valid shape and the bytes it claims.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "idlegrid/shared/tiff_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  idlegrid::TiffReadOptions options;
  options.max_bytes = 64 << 20;  // keep the fuzzer's memory bounded
  idlegrid::StatusOr<idlegrid::Volume> v = idlegrid::ReadTiffFromMemory(
      std::string_view(reinterpret_cast<const char*>(data), size), options);
  if (v.ok()) {
    const idlegrid::VolumeShape& s = v->shape();
    if (s.z < 1 || s.y < 1 || s.x < 1 || s.c < 1) std::abort();
    if (v->size_bytes() != static_cast<size_t>(s.elements()) * idlegrid::DTypeSize(v->dtype())) {
      std::abort();
    }
  }
  return 0;
}
