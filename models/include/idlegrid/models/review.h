// Where to correct: how uncertain a round's candidates are on a slice, from their class
// probabilities. The grid's review_slices units score a bounded sample of slices with every
// candidate (idlegrid-worker), the server ranks the slices, and the wizard and the CLI send
// the user to the most uncertain ones first. No LibTorch here. Thread-safe (pure functions).
#ifndef IDLEGRID_MODELS_REVIEW_H_
#define IDLEGRID_MODELS_REVIEW_H_

#include <vector>

#include "idlegrid/shared/status.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid::models {

struct EnsembleSlice {
  // Per voxel, the normalised entropy of the members' mean class probabilities, 0 (all
  // members sure of one class) to 255 (uniform): uint8, 1 x Y x X x 1.
  Volume uncertainty;
  double entropy = 0;             // its mean, 0..1: the slice's score
  double disagreement = 0;        // share of (voxel, member) pairs whose class is not the ensemble's
  double uncertain_fraction = 0;  // share of voxels with entropy above one half
  std::vector<double> agreement;  // per member: share of voxels where it gives the ensemble's class
};

// `probabilities`: one per member, uint8 p x 255 with one channel per class (what
// InferenceOptions::probabilities gives), all of one shape 1 x Y x X x K, K >= 2.
// INVALID_ARGUMENT when they differ or are empty.
StatusOr<EnsembleSlice> ScoreEnsemble(const std::vector<Volume>& probabilities);

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_REVIEW_H_
