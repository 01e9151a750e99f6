// The wizard's painting core, without a display: a label volume (0 = unlabelled, 1..K =
// classes), brush and eraser strokes rasterised as discs along a polyline, undo/redo of
// whole strokes, per-class counts kept up to date as strokes land, and "accept the
// prediction here" for corrections. A stroke touches only its bounding box on one slice, so
// its cost depends on the brush and path, not on the slice size.
#ifndef IDLEGRID_CLIENT_ANNOTATION_H_
#define IDLEGRID_CLIENT_ANNOTATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "idlegrid/shared/json.h"
#include "idlegrid/shared/status.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid::client {

struct LabelClass {
  std::string name;
  uint32_t rgb = 0;  // 0xRRGGBB
};

struct Point {
  double x = 0, y = 0;
};

// One change: a box of one slice, before and after.
struct Patch {
  int64_t z = 0, y0 = 0, x0 = 0, height = 0, width = 0;
  std::vector<uint8_t> before, after;
  bool empty() const { return height == 0 || width == 0; }
};

class Annotation {
 public:
  // An empty annotation (no labels, no classes) for an image of this shape (Z, Y, X).
  explicit Annotation(const VolumeShape& shape);
  // Labels read back (a session, a file): uint8, same Z/Y/X. Classes 1..max get default
  // names and colours unless given.
  static StatusOr<Annotation> FromLabels(Volume labels, std::vector<LabelClass> classes = {});

  // Classes are values 1..255 in order of creation.
  StatusOr<uint8_t> AddClass(const std::string& name, uint32_t rgb = 0);
  Status RenameClass(uint8_t value, const std::string& name);
  Status SetColour(uint8_t value, uint32_t rgb);
  const std::vector<LabelClass>& classes() const { return classes_; }
  static uint32_t DefaultColour(uint8_t value);

  // Paints `value` (0 erases) with a disc of `radius` pixels along `path` on slice z; points
  // outside the image are clipped. Returns the applied patch (empty when nothing changed) and
  // pushes it on the undo stack (clearing redo).
  StatusOr<Patch> Stroke(int64_t z, const std::vector<Point>& path, double radius, uint8_t value);
  // Copies `prediction` (uint8 labels of slice z, Y x X) into the labels where the brush
  // passes: "this part of the prediction is right". One undoable step.
  StatusOr<Patch> Accept(int64_t z, const std::vector<Point>& path, double radius, const uint8_t* prediction);

  bool Undo();
  bool Redo();
  bool CanUndo() const { return !undo_.empty(); }
  bool CanRedo() const { return !redo_.empty(); }

  // Labelled voxels per value: counts()[v] for v in 0..255 (counts()[0] = unlabelled).
  const std::vector<int64_t>& counts() const { return counts_; }
  int64_t labelled() const;
  const Volume& labels() const { return labels_; }
  const VolumeShape& shape() const { return labels_.shape(); }
  // Grows with every change (labels or classes): saves skip what has not changed.
  uint64_t revision() const { return revision_; }

  Json ClassesToJson() const;
  static StatusOr<std::vector<LabelClass>> ClassesFromJson(const Json& j);

 private:
  explicit Annotation(Volume labels);
  void Apply(const Patch& p, bool forward);
  StatusOr<Patch> Paint(int64_t z, const std::vector<Point>& path, double radius, uint8_t value,
                        const uint8_t* prediction);

  Volume labels_;
  std::vector<LabelClass> classes_;
  std::vector<int64_t> counts_;
  std::vector<Patch> undo_, redo_;
  uint64_t revision_ = 0;
  static constexpr size_t kMaxUndo = 200;
};

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_ANNOTATION_H_
