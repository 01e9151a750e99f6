// Fixtures for the server tests: a queue on a real SQLite file and blob store in a temp
// dir, a clock the test moves, volumes as TIFF blobs, and nodes.
#ifndef IDLEGRID_TESTS_SERVER_SERVER_FIXTURES_H_
#define IDLEGRID_TESTS_SERVER_SERVER_FIXTURES_H_

#include <atomic>
#include <memory>
#include <string>

#include "idlegrid/models/config_json.h"
#include "idlegrid/models/model_config.h"
#include "idlegrid/server/queue.h"
#include "idlegrid/shared/blob_store.h"
#include "idlegrid/shared/tiff_io.h"
#include "test_util.h"

namespace idlegrid::testing {

template <typename T>
T Must(StatusOr<T> v) {
  if (!v.ok()) throw std::runtime_error(v.status().ToString());
  return std::move(*v);
}
inline void Must(const Status& s) {
  if (!s.ok()) throw std::runtime_error(s.ToString());
}

inline models::ModelConfig TinyConfig(const std::string& name, int64_t epochs) {
  models::ModelConfig c;
  c.name = name;
  c.num_classes = 2;
  c.class_weights = {1.0, 1.0};
  c.class_names = {"a", "b"};
  c.base_filters = 8;
  c.depth = 2;
  c.patch_y = c.patch_x = 32;
  c.batch_size = 2;
  c.epochs = epochs;
  c.steps_per_epoch = 2;
  return c;
}

inline NodeInfo Node(int64_t cores = 8, int64_t ram_gib = 16) {
  NodeInfo n;
  n.hostname = "test-node";
  n.os = "Linux";
  n.version = "test";
  n.cores = cores;
  n.ram_bytes = ram_gib << 30;
  return n;
}

// A uint8 volume whose voxel (z, y, x) holds (z * 7 + y + x) % 251.
inline Volume Ramp(int64_t z, int64_t y, int64_t x) {
  Volume v = Must(Volume::Create({z, y, x, 1}, DType::kUInt8));
  uint8_t* p = v.data<uint8_t>();
  for (int64_t k = 0; k < z; ++k)
    for (int64_t j = 0; j < y; ++j)
      for (int64_t i = 0; i < x; ++i) p[(k * y + j) * x + i] = static_cast<uint8_t>((k * 7 + j + i) % 251);
  return v;
}

struct QueueFixture {
  TempDir dir;
  std::atomic<int64_t> now{1'700'000'000};
  std::unique_ptr<BlobStore> blobs = Must(BlobStore::Open(dir / "blobs"));
  PrivateKey key = Must(PrivateKey::Generate());
  server::QueueOptions options;
  std::unique_ptr<server::Queue> queue;

  QueueFixture() { Reopen(); }
  void Reopen() {
    queue.reset();
    queue = Must(server::Queue::Open(dir / "server.db", blobs.get(), key, options, [this] { return now.load(); }));
  }
  BlobRef PutVolume(const Volume& v, int64_t frames = 1) {
    const std::string path = dir / ("v" + std::to_string(counter++) + ".tif");
    TiffWriteOptions o;
    o.frames = frames;
    Must(WriteTiff(path, v, o));
    return Must(blobs->PutFile(path));
  }
  BlobRef PutBytes(const std::string& bytes) { return Must(blobs->Put(bytes)); }
  server::NodeCredentials Enroll(const NodeInfo& info = Node()) {
    const std::string token = Must(queue->CreateToken(server::TokenKind::kEnroll, "test"));
    return Must(queue->Enroll(token, info));
  }
  // A train job of one configuration split into units of `per_unit` epochs.
  std::string SubmitTrain(const models::ModelConfig& c, int64_t per_unit, const Volume& image,
                          const Volume& labels) {
    Job job;
    job.kind = JobKind::kTrain;
    job.name = c.name;
    job.inputs["image"] = PutVolume(image);
    job.inputs["labels"] = PutVolume(labels);
    job.config = {{"model", models::ConfigToJson(c)}, {"epochs_per_unit", per_unit}};
    return Must(queue->Submit(job));
  }
  int counter = 0;
};

}  // namespace idlegrid::testing

#endif  // IDLEGRID_TESTS_SERVER_SERVER_FIXTURES_H_
