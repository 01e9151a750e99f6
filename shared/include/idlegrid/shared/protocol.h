// The protocol messages, defined once for server, nodes, worker and wizard.
//
// Every top-level message carries "schema": kSchemaVersion. FromJson is strict: unknown or
// missing fields, wrong types, out-of-range numbers and oversize strings are
// INVALID_ARGUMENT errors that name the field. ToJson output parses back to an equal value.
// Times are Unix seconds (int64). Ids are [A-Za-z0-9_-]{1,64}; input/output names are
// [a-z0-9_.-]{1,64}.
#ifndef IDLEGRID_SHARED_PROTOCOL_H_
#define IDLEGRID_SHARED_PROTOCOL_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "idlegrid/shared/json.h"
#include "idlegrid/shared/status.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid {

inline constexpr int kSchemaVersion = 1;

// Limits shared by both ends.
inline constexpr int64_t kMaxBlobBytes = int64_t{1} << 44;       // 16 TiB
inline constexpr size_t kMaxConfigBytes = 256 * 1024;            // a model configuration
inline constexpr size_t kMaxNamedBlobs = 64;                     // inputs/outputs per message
inline constexpr size_t kMaxUrlLength = 2048;
inline constexpr int64_t kMaxEpochs = 1000000;
inline constexpr int64_t kMaxSlices = int64_t{1} << 31;
inline constexpr size_t kMaxRegionRuns = 1 << 16;
inline constexpr size_t kMaxReviewSlices = 4096;

// A content-addressed file: the sha256 of its bytes (lowercase hex) and its size. `url`
// says where to fetch it (may be empty when the receiver knows the blob endpoint).
struct BlobRef {
  std::string sha256;
  int64_t size = 0;
  std::string url;

  Json ToJson() const;
  static StatusOr<BlobRef> FromJson(const Json& j, const std::string& where = "blob");
  bool operator==(const BlobRef& o) const {
    return sha256 == o.sha256 && size == o.size && url == o.url;
  }
};
using NamedBlobs = std::map<std::string, BlobRef>;

struct GpuInfo {
  std::string name;
  int64_t memory_bytes = 0;
  bool operator==(const GpuInfo& o) const {
    return name == o.name && memory_bytes == o.memory_bytes;
  }
};

// What a node can run: reported at enrollment and with every lease request.
struct NodeInfo {
  std::string hostname;
  std::string os;       // e.g. "Linux 6.1.0 x86_64"
  std::string version;  // idlegrid version of the node
  int64_t cores = 1;
  int64_t ram_bytes = 0;
  std::vector<GpuInfo> gpus;

  Json ToJson() const;
  static StatusOr<NodeInfo> FromJson(const Json& j, const std::string& where = "node");
  bool operator==(const NodeInfo& o) const;
};

enum class JobKind { kTrain, kSweep, kInfer, kDenoise };
const char* JobKindName(JobKind kind);

// A user's request, as submitted: inputs are uploaded blobs, `config` describes the
// model configuration(s) as data (validated by models/, never code).
struct Job {
  std::string job_id;
  JobKind kind = JobKind::kTrain;
  std::string name;
  int64_t submitted_at = 0;
  NamedBlobs inputs;
  Json config = Json::object();

  Json ToJson() const;
  static StatusOr<Job> FromJson(const Json& j, const std::string& where = "job");
  bool operator==(const Job& o) const;
};

// review_slices: the candidates of a round predict a sample of the volume's slices, and the
// unit scores how uncertain they are there (models/review.h).
enum class UnitKind { kTrainEpochs, kInferSlab, kReviewSlices };
const char* UnitKindName(UnitKind kind);

// Epochs [begin, end) of a training chain; `begin` > 0 means the inputs hold a checkpoint.
struct EpochRange {
  int64_t begin = 0;
  int64_t end = 1;
  bool operator==(const EpochRange& o) const { return begin == o.begin && end == o.end; }
};

// One piece of a job that one node runs with idlegrid-worker.
struct WorkUnit {
  std::string unit_id;
  std::string job_id;
  UnitKind kind = UnitKind::kTrainEpochs;
  Json config = Json::object();
  NamedBlobs inputs;
  int64_t threads = 1;              // part of the result on CPU (determinism)
  int64_t checkpoint_every_s = 60;
  int64_t min_memory_bytes = 0;
  bool needs_gpu = false;
  int64_t seed = 0;                  // train_epochs only; 0..2^53-1
  std::optional<EpochRange> epochs;  // present iff kind == kTrainEpochs
  std::optional<SlabRange> slab;     // present iff kind == kInferSlab (see volume.h)
  // review_slices only: the global slices to score, increasing, each held by `region`
  // (required) with the halo its models need.
  std::vector<int64_t> review_slices;
  // Which slices of the volume the data inputs ("image", "labels", "volume") hold; absent:
  // the whole volume. A slab's region is its slices [read_begin, read_end).
  std::optional<SliceRegion> region;

  Json ToJson() const;
  static StatusOr<WorkUnit> FromJson(const Json& j, const std::string& where = "unit");
  bool operator==(const WorkUnit& o) const;
};

// {"depth": D, "runs": [[first, end], ...]}; FromJson validates (SliceRegion::Validate).
Json SliceRegionToJson(const SliceRegion& region);
StatusOr<SliceRegion> SliceRegionFromJson(const Json& j, const std::string& where = "region");

struct Lease {
  std::string lease_id;
  std::string unit_id;
  std::string node_id;
  int64_t issued_at = 0;
  int64_t deadline = 0;

  Json ToJson() const;
  static StatusOr<Lease> FromJson(const Json& j, const std::string& where = "lease");
  bool operator==(const Lease& o) const;
};

// Node -> server while a unit runs.
struct Heartbeat {
  std::string lease_id;
  std::string node_id;
  double progress = 0;  // 0..1 of the unit
  int64_t epoch = 0;    // epochs completed so far (train) or 0
  std::string message;
  std::map<std::string, double> metrics;
  std::optional<BlobRef> checkpoint;  // newest uploaded checkpoint, if any

  Json ToJson() const;
  static StatusOr<Heartbeat> FromJson(const Json& j, const std::string& where = "heartbeat");
  bool operator==(const Heartbeat& o) const;
};

enum class HeartbeatAction { kContinue, kAbort };

struct HeartbeatReply {
  HeartbeatAction action = HeartbeatAction::kContinue;
  int64_t deadline = 0;  // the lease's new deadline
  std::string reason;    // why, for "abort"

  Json ToJson() const;
  static StatusOr<HeartbeatReply> FromJson(const Json& j,
                                           const std::string& where = "heartbeat_reply");
  bool operator==(const HeartbeatReply& o) const;
};

// Node -> server when a unit is done.
struct Result {
  std::string lease_id;
  std::string unit_id;
  std::string node_id;
  NamedBlobs outputs;
  std::map<std::string, double> metrics;
  int64_t epochs_done = 0;
  double elapsed_s = 0;

  Json ToJson() const;
  static StatusOr<Result> FromJson(const Json& j, const std::string& where = "result");
  bool operator==(const Result& o) const;
};

// Node -> server when a node gives a unit back before its end (stopped, or the unit failed).
// `checkpoint` is the newest uploaded checkpoint: the unit's remainder resumes from it.
struct AbortRequest {
  std::string reason;
  bool failed = false;  // the unit failed on this node (bad input), rather than being stopped
  std::optional<BlobRef> checkpoint;

  Json ToJson() const;
  static StatusOr<AbortRequest> FromJson(const Json& j, const std::string& where = "abort");
  bool operator==(const AbortRequest& o) const {
    return reason == o.reason && failed == o.failed && checkpoint == o.checkpoint;
  }
};

// Reads the "schema" field of a top-level message and fails unless it is kSchemaVersion.
void ReadSchema(JsonReader& r);

// Parses text into a message with the default limits of ParseJson.
template <typename Message>
StatusOr<Message> ParseMessage(std::string_view text) {
  StatusOr<Json> j = ParseJson(text);
  if (!j.ok()) return j.status();
  return Message::FromJson(*j);
}

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_PROTOCOL_H_
