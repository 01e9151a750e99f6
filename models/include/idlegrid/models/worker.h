// idlegrid-worker runs exactly one work unit:
//
//   idlegrid-worker run UNIT.json --inputs DIR --outputs DIR
//
// UNIT.json is a WorkUnit (shared/protocol.h). Input blobs are files in --inputs named after
// the unit's input names; outputs are written to --outputs.
//
// train_epochs: config {"model": ModelConfig} (models/config_json.h); inputs "image" (TIFF),
//   "labels" (TIFF, segmentation only), to resume "checkpoint", and to fine-tune "init" (a
//   model package of the same network shape, used when there is no checkpoint). Trains until
//   epochs.end; writes outputs/checkpoint.pt every checkpoint_every_s seconds, at every
//   epoch end and when interrupted; at the chain's last epoch also outputs/model.pt (the
//   model package). outputs/metrics.json holds the metric history.
// infer_slab: config {"output": "labels" | "probabilities" | "denoised"}; inputs "model"
//   (package) and "volume" (TIFF); writes the slab's core slices to outputs/labels.tif
//   (+ probabilities.tif) or outputs/denoised.tif.
// review_slices: config {"models": [input names]}: the candidates of a round (segmentation
//   packages of the same classes); input "volume" holds the unit's region. Each model
//   predicts each of `slices` (with its own halo, from the region); writes
//   outputs/uncertainty.tif (uint8 per voxel, one slice per reviewed slice, in order) and
//   outputs/review.json {"slices": [{"z", "entropy", "disagreement", "uncertain_fraction"}],
//   "agreement": {model input name: mean share of voxels where it gives the ensemble's class}}.
//
// Standard output carries one JSON object per line: {"event": "start" | "progress" |
// "epoch" | "checkpoint" | "interrupted" | "done" | "error", ...}; "progress" (with
// "fraction") at most twice a second, for training and for a slab's tiles. SIGTERM or
// SIGINT: a training unit finishes its current step or validation tile, writes a checkpoint
// (well within 2 s) and exits with kInterrupted; an inference unit stops after its current
// tile and exits with kInterrupted (slabs restart whole).
#ifndef IDLEGRID_MODELS_WORKER_H_
#define IDLEGRID_MODELS_WORKER_H_

#include <atomic>
#include <cstdio>
#include <string>

namespace idlegrid::models {

enum WorkerExit : int {
  kWorkerOk = 0,
  kWorkerUsage = 2,        // bad command line
  kWorkerBadUnit = 3,      // the unit JSON or its model configuration is invalid
  kWorkerBadInput = 4,     // the data is unusable: shapes, labels, NaN, too small, ...
  kWorkerIoError = 5,      // an input is missing or unreadable, an output cannot be written
  kWorkerInternal = 6,     // LibTorch or another internal failure
  kWorkerInterrupted = 75, // stopped by a signal; training wrote outputs/checkpoint.pt
};

struct WorkerArgs {
  std::string unit_path;
  std::string inputs_dir;
  std::string outputs_dir;
  // Set to true to stop (the executable sets it from SIGTERM/SIGINT).
  const std::atomic<bool>* stop = nullptr;
  // Where the JSON lines go (the executable: stdout).
  std::FILE* events = nullptr;
};

// Runs the unit and returns the exit code.
int RunWorkUnit(const WorkerArgs& args);

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_WORKER_H_
