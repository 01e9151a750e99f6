// Planning (internal to server/): where a job's units are born. A submitted job is checked
// against its inputs, measured (a fingerprint from a bounded sample of the image and one
// streamed pass over the labels: never a whole volume in memory), given its model
// configurations (the job's own, a fine-tuned model's recorded one, or the no-parameter
// strategy's) and split into its first stage's units.
//
// Units name the region of the volume they need (WorkUnit::region: a training crop, a
// slab's slices). Their inputs still point at the whole uploaded volume; `prep` lists the
// inputs that the queue's preparation cuts down to the region (PreparePending) before the
// unit can be leased, so that what a node downloads is what its unit reads.
//
// Thread-safe: a Planner holds no state between calls (RecordedConfig must be thread-safe).
#ifndef IDLEGRID_SERVER_SRC_PLANNER_H_
#define IDLEGRID_SERVER_SRC_PLANNER_H_

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "idlegrid/models/model_config.h"
#include "idlegrid/models/strategy.h"
#include "idlegrid/server/queue.h"
#include "idlegrid/shared/blob_store.h"
#include "idlegrid/shared/protocol.h"
#include "idlegrid/shared/tiff_io.h"

namespace idlegrid::server {

// A unit as planned: its chain, the unit it waits for ("" = none) and the inputs to cut.
struct PlannedUnit {
  std::string chain;
  WorkUnit unit;
  std::string after;
  std::vector<std::string> prep;  // input names cut to unit.region before leasing
};

// Everything a training-stage plan needs to know about the job's data.
struct TrainingData {
  VolumeShape shape;
  bool segment = false;
  std::vector<int64_t> labelled_z;
  std::optional<models::DataFingerprint> fp;  // when the strategy plans
};

// What Submit stores: the plan (job, stages, shape) and the first stage's units.
struct JobPlan {
  Json stored;
  std::vector<PlannedUnit> units;
};


// The fingerprint of TIFF stacks on disk, read a range at a time. `labels_path` empty:
// denoising. Errors name the input ("image", "labels") and the file's problem.
StatusOr<models::DataFingerprint> FingerprintOfFiles(const std::string& image_path,
                                                     const std::string& labels_path,
                                                     const models::Resources& resources);

// Marks the data inputs of `u` for cutting to its region ("labels" Deflate-compressed), unless
// the region is the whole volume.
PlannedUnit WithPrep(std::string chain, WorkUnit u, std::string after);

// Cuts `region` out of the stored stack `source` into a blob: streamed (a bounded range of
// slices at a time), written once into the store's tmp/ and moved into place. The same
// slices of the same volume give the same bytes, hence the same blob. "labels" cuts are
// Deflate-compressed (mostly zeros). Errors name the source blob.
StatusOr<BlobRef> CutRegion(const BlobStore& blobs, const BlobRef& source, const SliceRegion& region,
                            bool deflate, const std::atomic<bool>* cancel = nullptr);

// The units of a training stage (stored plan: {"chains": [{"chain", "config"}], "seed",
// "epochs_per_unit", "labelled_z"}): each chain split into units that hand their checkpoints
// on, each holding its training region's slices of `inputs` (a denoiser's chain gets no
// labels). INVALID_ARGUMENT names the chain whose configuration is wrong.
StatusOr<std::vector<PlannedUnit>> SplitTrainStage(const std::string& job_id, const Json& stage, const NamedBlobs& inputs,
                                                   const VolumeShape& shape, int64_t frames, const QueueOptions& options);

// A stage's "chains" for training on the stack at `image_path` with the labels at
// `labels_path`, from a fingerprint of them: the no-parameter strategy's candidates
// (`replan`; one for a train job, !sweep), or the given `chains` with their intensity
// normalisation taken from this stack.
StatusOr<Json> ChainsFor(const std::string& image_path, const std::string& labels_path, const Json& chains, bool replan,
                         bool sweep, const QueueOptions& options);

class Planner {
 public:
  // The configuration a model was trained with on this server, or INVALID_ARGUMENT.
  using RecordedConfig = std::function<StatusOr<Json>(const BlobRef& model, const std::string& what)>;

  Planner(BlobStore* blobs, const QueueOptions& options, RecordedConfig recorded)
      : blobs_(blobs), options_(options), recorded_(std::move(recorded)) {}

  // `job` has its id and time already; its inputs must be stored. INVALID_ARGUMENT or
  // FAILED_PRECONDITION naming the input or config field for anything wrong.
  StatusOr<JobPlan> Plan(const Job& job) const;

 private:
  StatusOr<JobPlan> PlanInfer(const Job& job) const;
  StatusOr<JobPlan> PlanTraining(const Job& job) const;
  StatusOr<std::vector<models::ModelConfig>> Configs(const Job& job, TrainingData* data) const;
  // The first stage of a denoise-then-segment job: config.denoiser or the strategy's.
  StatusOr<Json> DenoiserStage(const Job& job, const TrainingData& data) const;
  StatusOr<BlobRef> Input(const Job& job, const std::string& name) const;
  StatusOr<std::string> PathOf(const Job& job, const std::string& name) const;
  StatusOr<TiffInfo> InfoOf(const Job& job, const std::string& name) const;

  BlobStore* blobs_;
  QueueOptions options_;
  RecordedConfig recorded_;
};

}  // namespace idlegrid::server

#endif  // IDLEGRID_SERVER_SRC_PLANNER_H_
