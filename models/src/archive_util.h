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

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_SRC_ARCHIVE_UTIL_H_
