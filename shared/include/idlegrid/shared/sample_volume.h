// A synthetic three-phase materials volume with exact ground truth, the bundled sample of
// the demo and of tests: a grainy matrix (phase 1), dark pores (phase 2) and bright
// inclusions (phase 3), blurred like a CT point-spread function and noisy, plus the sparse
// "scribbles" a user would paint on one slice in the wizard (brush strokes kept inside
// each phase, about the same number of pixels per phase).
//
// Deterministic: the same options give the same bytes on every platform (own RNG
// transforms over std::mt19937_64, no std:: distributions).
#ifndef IDLEGRID_SHARED_SAMPLE_VOLUME_H_
#define IDLEGRID_SHARED_SAMPLE_VOLUME_H_

#include <cstdint>

#include "idlegrid/shared/status.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid {

struct SampleOptions {
  VolumeShape shape{48, 160, 160, 1};
  uint64_t seed = 1;
  int64_t grains = 40;
  int64_t pores = 30;
  int64_t inclusions = 60;
  double blur_sigma = 1.0;    // voxels
  double noise_sigma = 0.06;  // relative to the full intensity range
  int64_t labelled_pixels = 50000;  // scribble budget, split over the phases
  int64_t brush_radius = 3;
  int64_t label_slice = -1;   // -1: the middle slice
};

struct MaterialsSample {
  Volume image;      // uint16
  Volume truth;      // uint8: 1 matrix, 2 pore, 3 inclusion
  Volume scribbles;  // uint8, same shape: 0 unlabelled, else the phase (on label_slice only)
  int64_t label_slice = 0;
};

StatusOr<MaterialsSample> GenerateMaterialsSample(const SampleOptions& options = {});

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_SAMPLE_VOLUME_H_
