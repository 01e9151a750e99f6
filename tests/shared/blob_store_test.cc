#include "idlegrid/shared/blob_store.h"

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include <catch2/catch.hpp>

#include "test_util.h"

namespace idlegrid {
namespace {

using testing::TempDir;

size_t CountFiles(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) ++n;
  }
  return n;
}

TEST_CASE("blobs are stored under their hash and read back", "[blob]") {
  TempDir dir;
  auto store = BlobStore::Open(dir.path()).value();
  StatusOr<BlobRef> ref = store->Put("hello blob");
  REQUIRE(ref.ok());
  CHECK(ref->sha256 == Sha256Hex("hello blob"));
  CHECK(ref->size == 10);
  CHECK(store->Has(ref->sha256));
  CHECK(store->Read(ref->sha256, 100).value() == "hello blob");
  CHECK(store->PathOf(ref->sha256).value() ==
        dir.path() + "/objects/" + ref->sha256.substr(0, 2) + "/" + ref->sha256);
  CHECK(store->Stat(ref->sha256).value().size == 10);
  CHECK(store->Verify(ref->sha256).ok());
  CHECK(store->List().value() == std::vector<std::string>{ref->sha256});
  // Storing the same content again is harmless.
  CHECK(store->Put("hello blob").value().sha256 == ref->sha256);
  REQUIRE(store->Remove(ref->sha256).ok());
  CHECK_FALSE(store->Has(ref->sha256));
  CHECK(store->Read(ref->sha256, 100).status().code() == StatusCode::kNotFound);
}

TEST_CASE("a put with the wrong hash stores nothing", "[blob]") {
  TempDir dir;
  auto store = BlobStore::Open(dir.path()).value();
  std::string wrong = Sha256Hex("something else");
  StatusOr<BlobRef> ref = store->Put("payload", wrong);
  REQUIRE_FALSE(ref.ok());
  CHECK(ref.status().code() == StatusCode::kDataLoss);
  CHECK(ref.status().message().find("hash mismatch") != std::string::npos);
  CHECK_FALSE(store->Has(wrong));
  CHECK(CountFiles(dir.path()) == 0);  // nor any temporary file
  CHECK(store->Put("payload", Sha256Hex("payload")).ok());
}

TEST_CASE("streamed puts check the declared size", "[blob]") {
  TempDir dir;
  auto store = BlobStore::Open(dir.path()).value();
  std::string data(100000, 'x');
  {
    auto w = store->NewWriter(Sha256Hex(data), 100000).value();
    for (size_t i = 0; i < data.size(); i += 3000) {
      REQUIRE(w->Append(data.substr(i, 3000)).ok());
    }
    REQUIRE(w->Commit().ok());
  }
  {
    auto w = store->NewWriter("", 10).value();
    CHECK(w->Append("0123456789A").code() == StatusCode::kDataLoss);
    CHECK_FALSE(w->Commit().ok());
  }
  {
    auto w = store->NewWriter("", 10).value();
    REQUIRE(w->Append("01234").ok());
    CHECK(w->Commit().status().code() == StatusCode::kDataLoss);  // short
  }
  {
    // Abandoned writers (e.g. a dropped upload) leave nothing behind.
    auto w = store->NewWriter().value();
    REQUIRE(w->Append("partial").ok());
  }
  CHECK(store->List().value().size() == 1);
  CHECK(CountFiles(dir.path()) == 1);
}

TEST_CASE("the size limit is enforced while streaming", "[blob]") {
  TempDir dir;
  BlobStoreOptions options;
  options.max_blob_bytes = 1000;
  auto store = BlobStore::Open(dir.path(), options).value();
  CHECK(store->Put(std::string(1000, 'a')).ok());
  StatusOr<BlobRef> big = store->Put(std::string(1001, 'a'));
  CHECK(big.status().code() == StatusCode::kResourceExhausted);
  CHECK(store->NewWriter("", 5000).status().code() == StatusCode::kResourceExhausted);
}

TEST_CASE("names that are not hex digests cannot reach the file system", "[blob]") {
  TempDir dir;
  auto store = BlobStore::Open(dir.path() + "/store").value();
  testing::Spit(dir / "secret", "top secret");
  const std::string sha = Sha256Hex("top secret");
  for (const std::string& name : std::vector<std::string>{
           std::string("../secret"), std::string("../../secret"), "/etc/passwd", std::string(""),
        std::string(64, '.'), "../" + sha.substr(3), sha.substr(0, 63) + "/",
        std::string(64, 'A'), sha + "0", "objects/../../secret"}) {
    INFO(name);
    CHECK(store->PathOf(name).status().code() == StatusCode::kInvalidArgument);
    CHECK(store->Read(name, 100).status().code() == StatusCode::kInvalidArgument);
    CHECK(store->Remove(name).code() == StatusCode::kInvalidArgument);
    if (!name.empty()) {  // an empty expected hash means "any content"
      CHECK(store->NewWriter(name).status().code() == StatusCode::kInvalidArgument);
    }
  }
  CHECK(testing::Slurp(dir / "secret") == "top secret");
}

TEST_CASE("corruption on disk is detected and the copy removed", "[blob]") {
  TempDir dir;
  auto store = BlobStore::Open(dir.path()).value();
  BlobRef ref = store->Put("original bytes").value();
  std::string path = store->PathOf(ref.sha256).value();
  ::chmod(path.c_str(), 0600);
  testing::Spit(path, "tampered bytes");
  Status st = store->Verify(ref.sha256);
  CHECK(st.code() == StatusCode::kDataLoss);
  CHECK_FALSE(store->Has(ref.sha256));
}

TEST_CASE("opening a store clears writes interrupted by a crash", "[blob]") {
  TempDir dir;
  {
    auto store = BlobStore::Open(dir.path()).value();
    REQUIRE(store->Put("kept").ok());
  }
  testing::Spit(dir / "tmp/leftover-from-crash", "half a blob");
  auto store = BlobStore::Open(dir.path()).value();
  CHECK_FALSE(std::filesystem::exists(dir / "tmp/leftover-from-crash"));
  CHECK(store->Has(Sha256Hex("kept")));
}

TEST_CASE("stray files in the store do not break listing", "[blob]") {
  TempDir dir;
  auto store = BlobStore::Open(dir.path()).value();
  BlobRef a = store->Put("a").value();
  BlobRef b = store->Put("b").value();
  testing::Spit(dir / "objects/zz-stray-file", "not a blob");
  testing::Spit(dir / "objects/00", "a file where a folder would be");
  StatusOr<std::vector<std::string>> list = store->List();
  REQUIRE(list.ok());
  CHECK(list->size() == 2);
}

TEST_CASE("PutFile copies a large file in chunks", "[blob]") {
  TempDir dir;
  std::string data;
  for (int i = 0; i < (5 << 20) / 4; ++i) data.append(reinterpret_cast<const char*>(&i), 4);
  testing::Spit(dir / "input.bin", data);
  auto store = BlobStore::Open(dir / "store").value();
  StatusOr<BlobRef> ref = store->PutFile(dir / "input.bin", Sha256Hex(data));
  REQUIRE(ref.ok());
  CHECK(ref->size == static_cast<int64_t>(data.size()));
  CHECK(store->Verify(ref->sha256).ok());
  CHECK(store->PutFile(dir / "absent").status().code() == StatusCode::kNotFound);
}

TEST_CASE("a file written in tmp/ is moved into the store under its hash", "[blob]") {
  TempDir dir;
  auto store = BlobStore::Open(dir / "store").value();
  const std::string tmp = store->TempPath("cut-1.tif");
  testing::Spit(tmp, "some cut bytes");
  BlobRef ref = store->PutTemporary(tmp).value();
  CHECK(ref.sha256 == Sha256Hex("some cut bytes"));
  CHECK(ref.size == 14);
  CHECK(store->Read(ref.sha256, 100).value() == "some cut bytes");
  CHECK_FALSE(std::filesystem::exists(tmp));  // moved, not copied
  // Only files under tmp/ are taken.
  testing::Spit(dir / "elsewhere", "x");
  CHECK(store->PutTemporary(dir / "elsewhere").status().code() == StatusCode::kInvalidArgument);
  CHECK(store->PutTemporary(store->TempPath("../../elsewhere")).status().code() == StatusCode::kInvalidArgument);
  CHECK(std::filesystem::exists(dir / "elsewhere"));
}

TEST_CASE("concurrent puts of the same and different blobs", "[blob]") {
  TempDir dir;
  auto store = BlobStore::Open(dir.path()).value();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        if (!store->Put("shared").ok()) ++failures;
        if (!store->Put("own " + std::to_string(t) + " " + std::to_string(i)).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  CHECK(store->List().value().size() == 1 + 8 * 20);
  CHECK(store->Verify(Sha256Hex("shared")).ok());
}

}  // namespace
}  // namespace idlegrid
