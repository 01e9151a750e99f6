#include "idlegrid/shared/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <random>
#include <vector>

namespace idlegrid {
namespace fs = std::filesystem;

Status ForEachChunk(const std::string& path, size_t chunk_bytes,
                    const std::function<Status(const char* data, size_t size)>& fn) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFoundError("no such file: " + path);
    return ErrnoError("cannot open " + path, errno);
  }
  std::vector<char> buf(chunk_bytes);
  Status st;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st = ErrnoError("cannot read " + path, errno);
      break;
    }
    if (n == 0) break;
    st = fn(buf.data(), static_cast<size_t>(n));
    if (!st.ok()) break;
  }
  ::close(fd);
  return st;
}

StatusOr<std::string> ReadFile(const std::string& path, uint64_t max_bytes) {
  std::string out;
  IDLEGRID_RETURN_IF_ERROR(ForEachChunk(path, 64 * 1024, [&](const char* data, size_t n) {
    if (out.size() + n > max_bytes) {
      return ResourceExhaustedError(path + " is larger than the limit of " +
                                    std::to_string(max_bytes) + " bytes");
    }
    out.append(data, n);
    return Status::Ok();
  }));
  return out;
}

Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open directory " + dir, errno);
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError("cannot fsync directory " + dir, e);
  return Status::Ok();
}

static Status WriteAll(int fd, const char* data, size_t size, const std::string& what) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write " + what, errno);
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, const std::string& data, unsigned mode) {
  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::random_device rd;
  std::string tmp = (dir / ("." + target.filename().string() + ".tmp" +
                            std::to_string(rd())))
                        .string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError("cannot create " + tmp, errno);
  // open() applies the umask; make the mode exact (e.g. 0600 for secrets).
  Status st = ::fchmod(fd, mode) == 0 ? Status::Ok() : ErrnoError("cannot chmod " + tmp, errno);
  if (st.ok()) st = WriteAll(fd, data.data(), data.size(), tmp);
  if (st.ok() && ::fsync(fd) != 0) st = ErrnoError("cannot fsync " + tmp, errno);
  if (::close(fd) != 0 && st.ok()) st = ErrnoError("cannot close " + tmp, errno);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    st = ErrnoError("cannot rename " + tmp + " to " + path, errno);
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncDir(dir.string());
}

Status MakeDirs(const std::string& dir, unsigned mode) {
  std::error_code ec;
  fs::path p(dir);
  fs::path partial;
  for (const fs::path& part : p) {
    partial /= part;
    if (fs::is_directory(partial, ec)) continue;
    if (::mkdir(partial.c_str(), mode) != 0 && errno != EEXIST) {
      return ErrnoError("cannot create directory " + partial.string(), errno);
    }
  }
  if (!fs::is_directory(p, ec)) return IoError(dir + " exists but is not a directory");
  return Status::Ok();
}

std::string ExecutableDir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  const std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

StatusOr<uint64_t> FileSize(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return NotFoundError("no such file: " + path);
    return ErrnoError("cannot stat " + path, errno);
  }
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError(path + " is not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace idlegrid
