// Fuzz target: the HDF5 reader on arbitrary bytes (a user's file.h5:/dataset, converted on
// their machine before upload). Beyond "no crash", what reads must have a valid shape and
// the bytes it claims.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "idlegrid/shared/hdf5_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = idlegrid::Hdf5Reader::OpenMemory(std::string_view(reinterpret_cast<const char*>(data), size), "",
                                            uint64_t{64} << 20);  // keep the fuzzer's memory bounded
  if (!r.ok()) return 0;
  const idlegrid::Hdf5Info& info = (*r)->info();
  if (info.shape.z < 1 || info.shape.y < 1 || info.shape.x < 1 || info.shape.c < 1 || info.frames < 1 ||
      info.shape.z % info.frames != 0) {
    std::abort();
  }
  auto v = (*r)->ReadSlices(0, info.shape.z < 4 ? info.shape.z : 4);
  if (v.ok() && v->size_bytes() != static_cast<size_t>(v->shape().elements()) * idlegrid::DTypeSize(v->dtype())) {
    std::abort();
  }
  return 0;
}
