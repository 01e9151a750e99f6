// Valid protocol messages for tests.
#ifndef IDLEGRID_TESTS_PROTOCOL_FIXTURES_H_
#define IDLEGRID_TESTS_PROTOCOL_FIXTURES_H_

#include <string>

#include "idlegrid/shared/protocol.h"

namespace idlegrid::testing {

inline BlobRef MakeBlob(char fill, int64_t size) {
  BlobRef b;
  b.sha256 = std::string(64, fill);
  b.size = size;
  b.url = "";
  return b;
}

inline WorkUnit MakeTrainUnit() {
  WorkUnit u;
  u.unit_id = "u-1";
  u.job_id = "job-7";
  u.kind = UnitKind::kTrainEpochs;
  u.config = Json{{"architecture", "unet2d"}, {"depth", 4}, {"lr", 0.001}};
  u.inputs["image"] = MakeBlob('a', 1000);
  u.inputs["labels"] = MakeBlob('b', 200);
  u.threads = 2;
  u.checkpoint_every_s = 60;
  u.min_memory_bytes = int64_t{2} << 30;
  u.needs_gpu = false;
  u.seed = 42;
  u.epochs = EpochRange{4, 8};
  return u;
}

inline WorkUnit MakeSlabUnit() {
  WorkUnit u;
  u.unit_id = "u-2";
  u.job_id = "job-8";
  u.kind = UnitKind::kInferSlab;
  u.config = Json{{"output", "labels"}};
  u.inputs["model"] = MakeBlob('c', 5000);
  u.inputs["volume"] = MakeBlob('d', 90000);
  u.threads = 1;
  u.checkpoint_every_s = 30;
  u.slab = SlabRange{16, 32, 4, 4};
  return u;
}

}  // namespace idlegrid::testing

#endif  // IDLEGRID_TESTS_PROTOCOL_FIXTURES_H_
