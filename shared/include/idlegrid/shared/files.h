// Small, careful file-system helpers used by the blob store, key files and config.
#ifndef IDLEGRID_SHARED_FILES_H_
#define IDLEGRID_SHARED_FILES_H_

#include <cstdint>
#include <functional>
#include <string>

#include "idlegrid/shared/status.h"

namespace idlegrid {

// Reads a whole file. Fails with RESOURCE_EXHAUSTED if it is larger than max_bytes.
StatusOr<std::string> ReadFile(const std::string& path, uint64_t max_bytes);

// Reads a file in chunks of up to chunk_bytes and passes each to `fn`; stops at the first
// error from reading or from `fn`. Memory does not grow with the file.
Status ForEachChunk(const std::string& path, size_t chunk_bytes,
                    const std::function<Status(const char* data, size_t size)>& fn);

// Writes `data` so that `path` holds either its old contents or all of `data`, never a mix:
// a temporary file in the same directory with `mode` permissions is written, fsynced and
// renamed over `path`, then the directory is fsynced.
Status WriteFileAtomic(const std::string& path, const std::string& data, unsigned mode = 0644);

// Makes `dir` and its parents (like mkdir -p); new directories get `mode`.
Status MakeDirs(const std::string& dir, unsigned mode = 0755);

// fsyncs a directory so that a rename or create inside it is durable.
Status FsyncDir(const std::string& dir);

// Size of a regular file.
StatusOr<uint64_t> FileSize(const std::string& path);

// The folder of the running program (from /proc/self/exe), where its sibling programs
// (idlegrid-worker, idlegrid-node) live; "." if it cannot be told.
std::string ExecutableDir();

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_FILES_H_
