// Small helpers around torch::serialize archives (internal to models/).
#ifndef IDLEGRID_MODELS_SRC_ARCHIVE_UTIL_H_
#define IDLEGRID_MODELS_SRC_ARCHIVE_UTIL_H_

#include <cstdio>
#include <string>

#include <torch/torch.h>

#include "idlegrid/shared/status.h"

namespace idlegrid::models {

inline void WriteString(torch::serialize::OutputArchive& a, const std::string& key,
                        const std::string& value) {
  a.write(key, c10::IValue(value));
}

inline std::string ReadString(torch::serialize::InputArchive& a, const std::string& key) {
  c10::IValue v;
  a.read(key, v);
  return v.toStringRef();
}

// Saves to path + ".tmp" and renames, so a reader never sees half a file.
inline Status SaveArchiveAtomic(torch::serialize::OutputArchive& a, const std::string& path) {
  const std::string tmp = path + ".tmp";
  try {
    a.save_to(tmp);
  } catch (const c10::Error& e) {
    std::remove(tmp.c_str());
    return IoError("cannot write " + path + ": " + e.what_without_backtrace());
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return IoError("cannot move " + tmp + " to " + path);
  }
  return Status::Ok();
}

// FNV-1a over parameter names and bytes: tells bit-identical weights from different ones.
inline std::string ParameterDigest(const torch::nn::Module& module) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  for (const auto& item : module.named_parameters()) {
    torch::Tensor v = item.value().detach().to(torch::kCPU).contiguous();
    mix(item.key().data(), item.key().size());
    mix(v.data_ptr(), static_cast<size_t>(v.numel() * v.element_size()));
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_SRC_ARCHIVE_UTIL_H_
