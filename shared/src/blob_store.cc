#include "idlegrid/shared/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <filesystem>

#include "idlegrid/shared/crypto.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/json.h"

namespace idlegrid {
namespace fs = std::filesystem;
namespace {

Status CheckName(const std::string& sha256) {
  if (!IsLowerHex(sha256, 64)) {
    return InvalidArgumentError("invalid blob name \"" + sha256.substr(0, 80) +
                                "\": expected 64 lowercase hex digits");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<BlobStore>> BlobStore::Open(const std::string& root,
                                                     BlobStoreOptions options) {
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(root + "/objects", 0700));
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(root + "/tmp", 0700));
  // Anything in tmp/ is a write that never committed (a crash or a kill).
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root + "/tmp", ec)) {
    fs::remove(entry.path(), ec);
  }
  return std::unique_ptr<BlobStore>(new BlobStore(root, options));
}

std::string BlobStore::ObjectPath(const std::string& sha256) const {
  return root_ + "/objects/" + sha256.substr(0, 2) + "/" + sha256;
}

StatusOr<std::unique_ptr<BlobStore::Writer>> BlobStore::NewWriter(
    const std::string& expected_sha256, int64_t expected_size) const {
  if (!expected_sha256.empty()) IDLEGRID_RETURN_IF_ERROR(CheckName(expected_sha256));
  if (expected_size > options_.max_blob_bytes) {
    return ResourceExhaustedError("blob of " + std::to_string(expected_size) +
                                  " bytes exceeds the limit of " +
                                  std::to_string(options_.max_blob_bytes));
  }
  std::string tmp = root_ + "/tmp/" + RandomToken(12);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("cannot create " + tmp, errno);
  return std::unique_ptr<Writer>(new Writer(this, fd, tmp, expected_sha256, expected_size));
}

BlobStore::Writer::Writer(const BlobStore* store, int fd, std::string tmp_path,
                          std::string expected_sha256, int64_t expected_size)
    : store_(store),
      fd_(fd),
      tmp_path_(std::move(tmp_path)),
      expected_sha256_(std::move(expected_sha256)),
      expected_size_(expected_size) {}

BlobStore::Writer::~Writer() { Discard(); }

void BlobStore::Writer::Discard() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!tmp_path_.empty()) {
    ::unlink(tmp_path_.c_str());
    tmp_path_.clear();
  }
}

Status BlobStore::Writer::Append(const void* data, size_t size) {
  if (!failed_.ok()) return failed_;
  if (fd_ < 0) return FailedPreconditionError("blob writer already committed");
  int64_t limit = expected_size_ >= 0 ? expected_size_ : store_->options_.max_blob_bytes;
  if (written_ + static_cast<int64_t>(size) > limit) {
    failed_ = expected_size_ >= 0
                  ? DataLossError("blob is larger than its declared size of " +
                                  std::to_string(expected_size_) + " bytes")
                  : ResourceExhaustedError("blob exceeds the limit of " +
                                           std::to_string(limit) + " bytes");
    Discard();
    return failed_;
  }
  const char* p = static_cast<const char*>(data);
  size_t left = size;
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      failed_ = ErrnoError("cannot write blob", errno);
      Discard();
      return failed_;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  hash_.Update(data, size);
  written_ += static_cast<int64_t>(size);
  return Status::Ok();
}

StatusOr<BlobRef> BlobStore::Writer::Commit() {
  if (!failed_.ok()) return failed_;
  if (fd_ < 0) return FailedPreconditionError("blob writer already committed");
  std::string sha = hash_.HexDigest();
  if (expected_size_ >= 0 && written_ != expected_size_) {
    failed_ = DataLossError("blob has " + std::to_string(written_) + " bytes, expected " +
                            std::to_string(expected_size_));
  } else if (!expected_sha256_.empty() && sha != expected_sha256_) {
    failed_ = DataLossError("blob hash mismatch: expected " + expected_sha256_ + ", got " + sha);
  } else if (::fsync(fd_) != 0) {
    failed_ = ErrnoError("cannot fsync blob", errno);
  }
  if (!failed_.ok()) {
    Discard();
    return failed_;
  }
  ::close(fd_);
  fd_ = -1;
  std::string dir = store_->root_ + "/objects/" + sha.substr(0, 2);
  Status st = MakeDirs(dir, 0700);
  std::string final_path = store_->ObjectPath(sha);
  if (st.ok() && ::rename(tmp_path_.c_str(), final_path.c_str()) != 0) {
    st = ErrnoError("cannot move blob into place", errno);
  }
  if (st.ok()) st = FsyncDir(dir);
  if (!st.ok()) {
    failed_ = st;
    Discard();
    return st;
  }
  tmp_path_.clear();
  BlobRef ref;
  ref.sha256 = sha;
  ref.size = written_;
  return ref;
}

StatusOr<BlobRef> BlobStore::Put(std::string_view data, const std::string& expected_sha256) const {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<Writer> w, NewWriter(expected_sha256));
  IDLEGRID_RETURN_IF_ERROR(w->Append(data));
  return w->Commit();
}

StatusOr<BlobRef> BlobStore::PutFile(const std::string& path,
                                     const std::string& expected_sha256) const {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<Writer> w, NewWriter(expected_sha256));
  IDLEGRID_RETURN_IF_ERROR(ForEachChunk(
      path, 1 << 20, [&](const char* data, size_t n) { return w->Append(data, n); }));
  return w->Commit();
}

std::string BlobStore::TempPath(const std::string& name) const { return root_ + "/tmp/" + name; }

StatusOr<BlobRef> BlobStore::PutTemporary(const std::string& tmp_path) const {
  const std::string prefix = root_ + "/tmp/";
  if (tmp_path.compare(0, prefix.size(), prefix) != 0 || tmp_path.find("/..") != std::string::npos) {
    return InvalidArgumentError(tmp_path + " is not in the store's tmp/");
  }
  auto fail = [&](Status st) {
    ::unlink(tmp_path.c_str());
    return st;
  };
  StatusOr<std::string> sha = Sha256File(tmp_path);
  if (!sha.ok()) return fail(sha.status());
  StatusOr<uint64_t> size = FileSize(tmp_path);
  if (!size.ok()) return fail(size.status());
  if (static_cast<int64_t>(*size) > options_.max_blob_bytes) {
    return fail(ResourceExhaustedError("blob of " + std::to_string(*size) + " bytes is over the store's limit"));
  }
  const int fd = ::open(tmp_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(ErrnoError("cannot open " + tmp_path, errno));
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) return fail(ErrnoError("cannot fsync " + tmp_path, errno));
  const std::string dir = root_ + "/objects/" + sha->substr(0, 2);
  Status st = MakeDirs(dir, 0700);
  if (st.ok() && ::rename(tmp_path.c_str(), ObjectPath(*sha).c_str()) != 0) {
    st = ErrnoError("cannot move blob into place", errno);
  }
  if (st.ok()) st = FsyncDir(dir);
  if (!st.ok()) return fail(st);
  BlobRef ref;
  ref.sha256 = *sha;
  ref.size = static_cast<int64_t>(*size);
  return ref;
}

bool BlobStore::Has(const std::string& sha256) const { return PathOf(sha256).ok(); }

StatusOr<std::string> BlobStore::PathOf(const std::string& sha256) const {
  IDLEGRID_RETURN_IF_ERROR(CheckName(sha256));
  std::string path = ObjectPath(sha256);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return NotFoundError("no blob " + sha256);
  }
  return path;
}

StatusOr<BlobRef> BlobStore::Stat(const std::string& sha256) const {
  IDLEGRID_ASSIGN_OR_RETURN(std::string path, PathOf(sha256));
  IDLEGRID_ASSIGN_OR_RETURN(uint64_t size, FileSize(path));
  BlobRef ref;
  ref.sha256 = sha256;
  ref.size = static_cast<int64_t>(size);
  return ref;
}

StatusOr<std::string> BlobStore::Read(const std::string& sha256, uint64_t max_bytes) const {
  IDLEGRID_ASSIGN_OR_RETURN(std::string path, PathOf(sha256));
  return ReadFile(path, max_bytes);
}

Status BlobStore::Verify(const std::string& sha256) const {
  IDLEGRID_ASSIGN_OR_RETURN(std::string path, PathOf(sha256));
  IDLEGRID_ASSIGN_OR_RETURN(std::string actual, Sha256File(path));
  if (actual != sha256) {
    ::unlink(path.c_str());  // a corrupt copy is worse than none: it would be served
    return DataLossError("blob " + sha256 + " is corrupt on disk (hash " + actual +
                         "); removed");
  }
  return Status::Ok();
}

Status BlobStore::Remove(const std::string& sha256) const {
  IDLEGRID_ASSIGN_OR_RETURN(std::string path, PathOf(sha256));
  if (::unlink(path.c_str()) != 0) return ErrnoError("cannot remove " + path, errno);
  return Status::Ok();
}

StatusOr<std::vector<std::string>> BlobStore::List() const {
  std::vector<std::string> out;
  std::error_code ec;
  fs::directory_iterator dirs(root_ + "/objects", ec), end;
  if (ec) return IoError("cannot list " + root_ + ": " + ec.message());
  for (; dirs != end; dirs.increment(ec)) {
    if (ec) return IoError("cannot list " + root_ + ": " + ec.message());
    if (!dirs->is_directory(ec)) continue;  // stray files are not blobs
    fs::directory_iterator files(dirs->path(), ec);
    if (ec) return IoError("cannot list " + dirs->path().string() + ": " + ec.message());
    for (; files != end; files.increment(ec)) {
      if (ec) return IoError("cannot list " + dirs->path().string() + ": " + ec.message());
      std::string name = files->path().filename().string();
      if (IsLowerHex(name, 64)) out.push_back(name);
    }
  }
  if (ec) return IoError("cannot list " + root_ + ": " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace idlegrid
