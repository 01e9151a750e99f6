// Assimilation (internal to server/): what a finished stage gives. A training stage's
// chains are ranked by their validation (ChainScore) and give their models (a denoiser's
// stage, in a denoise-then-segment job, gives outputs["denoiser"]); then the next stage is
// split: a training stage on an earlier stage's output (its candidates planned from that
// output when the plan says "replan", recorded in StageOutcome::plan), the
// review stage (every candidate on a sample of slices: SplitReview) or the best one's
// inference stage is split (its inputs cut on preparation). A review stage's scores become
// summary["review"] (slices in Z order with their uncertainty, the most uncertain first in
// "where", each candidate's agreement with the ensemble) and its maps the output
// "uncertainty" (the sampled slices' per-voxel uncertainty, in Z order); the ranking is
// then revised (Rerank): validation on held-out strokes of one slice cannot tell apart
// candidates that all fit that slice, agreement on the rest of the volume can. An inference stage's slabs are
// checked and streamed in Z order into one TIFF blob, a slab at a time. Pure with respect
// to the database: the queue reads the finished units, calls Assimilate outside its lock,
// and records the Outcome only if the job has not changed meanwhile.
//
// Thread-safe: an Assimilator holds no state between calls.
#ifndef IDLEGRID_SERVER_SRC_ASSIMILATOR_H_
#define IDLEGRID_SERVER_SRC_ASSIMILATOR_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "idlegrid/server/queue.h"
#include "idlegrid/shared/blob_store.h"
#include "idlegrid/shared/json.h"
#include "planner.h"

namespace idlegrid::server {

// Validation Dice this close to the best's counts as a tie (held-out strokes of one slice
// put every reasonable candidate at 0.99-1.00).
inline constexpr double kTiedDice = 0.02;

// A unit of the finished stage, as stored: its WorkUnit JSON and its outputs.
struct FinishedUnit {
  std::string unit_id, chain;
  Json unit, outputs;
};

// The validation score of a finished chain: mean Dice of its last validated epoch
// (segmentation; the refit epochs at a chain's end train on the validation strokes and
// validate nothing), or else minus the last epoch's training loss (denoising, or nothing
// held out). -1e300 when there is none.
double ChainScore(const Json& metrics);

// What a stage gave: outputs to record, the summary's new fields, models trained (sha256 ->
// configuration JSON), the next stage's units, or why the job fails.
struct StageOutcome {
  Json job_outputs = Json::object();
  Json summary = Json::object();
  std::vector<std::pair<std::string, std::string>> models;
  std::vector<PlannedUnit> next_units;
  Json plan;  // null, or the job's plan as revised (a stage's chains planned from earlier outputs)
  std::string failure;
};

class Assimilator {
 public:
  Assimilator(const BlobStore* blobs, const QueueOptions& options) : blobs_(blobs), options_(options) {}

  // `plan` is the job's stored plan, `job_outputs` and `job_summary` what it has so far,
  // `finished` the stage's units in order.
  StageOutcome Assimilate(const std::string& job_id, int64_t stage, const Json& plan, const Json& job_outputs,
                          const Json& job_summary, const std::vector<FinishedUnit>& finished) const;

 private:
  void RankChains(const std::string& job_id, int64_t stage, const Json& plan,
                  const std::vector<FinishedUnit>& finished, StageOutcome* o) const;
  void Stitch(const std::string& job_id, const Json& plan, const Json& st, const std::vector<FinishedUnit>& finished,
              StageOutcome* o) const;
  void Review(const std::string& job_id, const Json& plan, const std::vector<FinishedUnit>& finished, StageOutcome* o) const;
  // After a review: candidates whose validation is within kTiedDice of the best are told
  // apart by their agreement with the ensemble on the reviewed (mostly unlabelled) slices.
  void Rerank(const Json& ranking, const Json& agreement, StageOutcome* o) const;
  // The units of stage `next` after training: a review of every chain's model, or the
  // inference of the best one (outputs["model"]).
  void SplitNext(const std::string& job_id, int64_t next, const Json& plan, const Json& outputs, StageOutcome* o) const;
  // A training stage after the first (denoise first: the candidates, on the denoised
  // volume), its chains planned now when the stage says "replan".
  void SplitTraining(const std::string& job_id, int64_t next, const Json& plan, const BlobRef& volume,
                     const VolumeShape& shape, StageOutcome* o) const;
  StatusOr<BlobRef> VolumeOf(const Json& plan, const Json& outputs, const std::string& name) const;
  // Streams the slices of each unit's TIFF output `name`, in the units' order, into one blob;
  // a hyperstack of `frames` time points when it holds the series' `series_depth` slices.
  StatusOr<BlobRef> StitchOutput(const std::string& job_id, const std::string& name,
                                 const std::vector<FinishedUnit>& units, int64_t frames, int64_t series_depth,
                                 const std::function<Status(const FinishedUnit&, int64_t slices)>& check) const;

  const BlobStore* blobs_;
  QueueOptions options_;
};

}  // namespace idlegrid::server

#endif  // IDLEGRID_SERVER_SRC_ASSIMILATOR_H_
