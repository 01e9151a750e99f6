// What the wizard's views draw, without a display: stacks read lazily slice by slice (a
// 512³ stack opens by reading its header and one slice, not 256 MiB), window/level contrast
// with an automatic window from percentiles, slices rendered to RGB with the labels
// overlaid in their classes' colours, and the orthogonal planes (XZ, YZ) of a volume.
#ifndef IDLEGRID_CLIENT_SLICE_VIEW_H_
#define IDLEGRID_CLIENT_SLICE_VIEW_H_

#include <cstdint>
#include <algorithm>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "idlegrid/shared/status.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid {
struct TiffInfo;
}

namespace idlegrid::client {

// A TIFF stack (or single image) whose slices are read when first shown and kept in a small
// least-recently-used cache. Thread-safe.
class LazyStack {
 public:
  // Reads the header only. INVALID_ARGUMENT for files that are not a single-channel stack
  // idlegrid can read, with the reason.
  static StatusOr<std::unique_ptr<LazyStack>> Open(const std::string& path, size_t cache_slices = 24);

  const std::string& path() const { return path_; }
  const VolumeShape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  // A time series' time points (shape().z = frames() x slices each; 1 for a volume).
  int64_t frames() const { return frames_; }

  // Slice z as a 1 x Y x X volume.
  StatusOr<std::shared_ptr<const Volume>> Slice(int64_t z);

 private:
  LazyStack() = default;
  std::string path_;
  VolumeShape shape_;
  DType dtype_ = DType::kUInt8;
  int64_t frames_ = 1;
  size_t capacity_ = 24;
  std::mutex mu_;
  std::list<std::pair<int64_t, std::shared_ptr<const Volume>>> cache_;  // most recent first
};

// Where a slice of a stack lies in a time series: time point t, slice z of it. The stack's
// slices are time points one after the other (ImageJ's order), `global` = t * depth + z.
// A volume is one time point. Plain value.
struct SeriesIndex {
  int64_t slices = 1;  // the stack's slices (all time points)
  int64_t frames = 1;
  int64_t depth() const { return frames > 0 ? slices / frames : slices; }
  int64_t Time(int64_t global) const { return global / std::max<int64_t>(depth(), 1); }
  int64_t Slice(int64_t global) const { return global % std::max<int64_t>(depth(), 1); }
  // Clamped to the stack.
  int64_t Global(int64_t t, int64_t z) const;
  // "Slice 13 of 40", or "Time 2 of 8, slice 13 of 40" for a series (1-based, as shown).
  std::string Describe(int64_t global) const;
};

// Display window: values lo..hi map to black..white.
struct Window {
  double lo = 0, hi = 1;
};
// From the low/high percentiles of slice z (sampled; ignores NaN).
Window AutoWindow(const Volume& v, int64_t z = 0, double low_pct = 0.5, double high_pct = 99.5);
// The data range of the dtype (uint8 0..255, uint16 0..65535) or of slice z for float.
Window FullRange(const Volume& v, int64_t z = 0);

// Slice z of a single-channel volume through `w` as RGB (Y * X * 3 bytes).
std::vector<uint8_t> RenderGray(const Volume& v, int64_t z, Window w);
// Blends label colours over `rgb` (same Y x X) for the labels of slice z: value k in
// colours[k - 1] (0xRRGGBB) with `alpha`. Only rows [y0, y1) and columns [x0, x1).
void BlendLabels(const Volume& labels, int64_t z, const std::vector<uint32_t>& colours, double alpha,
                 std::vector<uint8_t>* rgb, int64_t y0 = 0, int64_t y1 = -1, int64_t x0 = 0, int64_t x1 = -1);

enum class Plane { kXY, kXZ, kYZ };
// A plane through a single-channel volume as a 1 x H x W volume: XY at z=index (Y x X), XZ at
// y=index (Z x X), YZ at x=index (Z x Y). XZ and YZ span slices [z_begin, z_end) (z_end < 0:
// to the end): one time point of a series.
StatusOr<Volume> ExtractPlane(const Volume& v, Plane plane, int64_t index, int64_t z_begin = 0, int64_t z_end = -1);

// A stack reduced in-plane for orthogonal views of a volume larger than memory: every
// factor-th row and column of every slice (nearest), all slices. Plain value.
struct Overview {
  int64_t factor = 1;
  VolumeShape shape;  // the stack's
  Volume reduced;     // Z x ceil(Y / factor) x ceil(X / factor)
  // XZ at full-resolution row `index` / YZ at column `index` (XY: slice `index`) through
  // slices [z_begin, z_end), `factor` times coarser in-plane.
  StatusOr<Volume> Through(Plane plane, int64_t index, int64_t z_begin = 0, int64_t z_end = -1) const;
};
// The per-slice uncertainty strip beside the slice slider: `width` columns across slices
// [first, first + count) (one time point), each 0xRRGGBB: the colour of the most uncertain
// reviewed slice it covers, from pale (the least uncertain reviewed slice) to deep red (the
// most), or light gray where none was reviewed. `uncertainty`: reviewed global slice -> 0..1.
std::vector<uint32_t> UncertaintyStrip(const std::map<int64_t, double>& uncertainty, int64_t first, int64_t count,
                                       int64_t width);

// The smallest factor that keeps a stack of this shape and type within `budget_bytes`
// (image and labels reduced by the image's factor line up).
int64_t OverviewFactor(const VolumeShape& shape, DType dtype, int64_t budget_bytes);
// Reads the single-channel TIFF stack at `path` once, a slice at a time. `progress` (may be
// empty) is told the slices done after each; returning false stops with CANCELLED.
StatusOr<Overview> BuildOverview(const std::string& path, int64_t factor,
                                 const std::function<bool(int64_t done, int64_t total)>& progress = {});

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_SLICE_VIEW_H_
