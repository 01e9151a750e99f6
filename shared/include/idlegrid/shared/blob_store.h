// A content-addressed file store: each blob is named by the SHA-256 of its bytes.
//
//   root/objects/ab/abcdef...   (64 lowercase hex digits; the first two name the folder)
//   root/tmp/                   (writes in progress; emptied when the store is opened)
//
// A blob becomes visible only after all of it was written to a temporary file, fsynced,
// its hash checked, and the file renamed into place (then the folder is fsynced): a crash
// leaves either the whole blob or nothing. Names are validated before any path is formed,
// so no name can reach outside root. Thread-safe: concurrent puts of the same blob are
// harmless (same bytes, atomic rename).
#ifndef IDLEGRID_SHARED_BLOB_STORE_H_
#define IDLEGRID_SHARED_BLOB_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "idlegrid/shared/crypto.h"
#include "idlegrid/shared/protocol.h"
#include "idlegrid/shared/status.h"

namespace idlegrid {

struct BlobStoreOptions {
  int64_t max_blob_bytes = kMaxBlobBytes;  // larger puts fail with RESOURCE_EXHAUSTED
};

class BlobStore {
 public:
  // Streams one blob into the store. Destroying it before Commit() discards the data.
  class Writer {
   public:
    ~Writer();
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    // Appends bytes; fails (and discards everything) beyond the size limit.
    Status Append(const void* data, size_t size);
    Status Append(std::string_view data) { return Append(data.data(), data.size()); }
    // Makes the blob visible. Fails with DATA_LOSS if the bytes do not match the expected
    // hash or size given to NewWriter; nothing is stored then.
    StatusOr<BlobRef> Commit();
    int64_t bytes_written() const { return written_; }

   private:
    friend class BlobStore;
    Writer(const BlobStore* store, int fd, std::string tmp_path, std::string expected_sha256,
           int64_t expected_size);
    void Discard();

    const BlobStore* store_;
    int fd_;
    std::string tmp_path_;
    std::string expected_sha256_;
    int64_t expected_size_;
    int64_t written_ = 0;
    Sha256 hash_;
    Status failed_;
  };

  // Opens (creating if needed) a store under `root`.
  static StatusOr<std::unique_ptr<BlobStore>> Open(const std::string& root,
                                                   BlobStoreOptions options = {});

  // expected_sha256 empty: any content; expected_size < 0: any size (up to the limit).
  StatusOr<std::unique_ptr<Writer>> NewWriter(const std::string& expected_sha256 = "",
                                              int64_t expected_size = -1) const;
  StatusOr<BlobRef> Put(std::string_view data, const std::string& expected_sha256 = "") const;
  // Copies a file into the store, streaming.
  StatusOr<BlobRef> PutFile(const std::string& path,
                            const std::string& expected_sha256 = "") const;

  bool Has(const std::string& sha256) const;
  // A path under tmp/ for a file written by other means (a TIFF cut from a stored volume);
  // `name` must be unique to the writer (it is not checked).
  std::string TempPath(const std::string& name) const;
  // Moves a finished file from tmp/ into the store under its hash (fsynced, renamed: no
  // copy). The file is gone afterwards whether this succeeds or not.
  StatusOr<BlobRef> PutTemporary(const std::string& tmp_path) const;
  // Path of a stored blob: INVALID_ARGUMENT for a name that is not 64 lowercase hex digits,
  // NOT_FOUND when absent. The file must not be modified.
  StatusOr<std::string> PathOf(const std::string& sha256) const;
  StatusOr<BlobRef> Stat(const std::string& sha256) const;
  StatusOr<std::string> Read(const std::string& sha256, uint64_t max_bytes) const;
  // Re-hashes a stored blob; DATA_LOSS (and the blob is removed) if it was corrupted on disk.
  Status Verify(const std::string& sha256) const;
  Status Remove(const std::string& sha256) const;
  StatusOr<std::vector<std::string>> List() const;

  const std::string& root() const { return root_; }
  const BlobStoreOptions& options() const { return options_; }

 private:
  BlobStore(std::string root, BlobStoreOptions options)
      : root_(std::move(root)), options_(options) {}
  std::string ObjectPath(const std::string& sha256) const;  // name already validated

  std::string root_;
  BlobStoreOptions options_;
};

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_BLOB_STORE_H_
