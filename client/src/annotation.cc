#include "idlegrid/client/annotation.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace idlegrid::client {

namespace {

// Marks in `mask` (the box y0, x0, h, w) a disc of radius r around every sample of the
// polyline, sampled every half pixel.
void RasterizeBrush(const std::vector<Point>& path, double r, int64_t y0, int64_t x0, int64_t h, int64_t w,
                    std::vector<uint8_t>* mask) {
  auto stamp = [&](double cx, double cy) {
    const int64_t ya = std::max<int64_t>(y0, static_cast<int64_t>(std::floor(cy - r)));
    const int64_t yb = std::min<int64_t>(y0 + h - 1, static_cast<int64_t>(std::ceil(cy + r)));
    const int64_t xa = std::max<int64_t>(x0, static_cast<int64_t>(std::floor(cx - r)));
    const int64_t xb = std::min<int64_t>(x0 + w - 1, static_cast<int64_t>(std::ceil(cx + r)));
    const double r2 = r * r;
    for (int64_t y = ya; y <= yb; ++y) {
      const double dy = static_cast<double>(y) - cy;
      for (int64_t x = xa; x <= xb; ++x) {
        const double dx = static_cast<double>(x) - cx;
        if (dx * dx + dy * dy <= r2) (*mask)[static_cast<size_t>((y - y0) * w + (x - x0))] = 1;
      }
    }
  };
  if (path.size() == 1) stamp(path[0].x, path[0].y);
  for (size_t i = 1; i < path.size(); ++i) {
    const double dx = path[i].x - path[i - 1].x, dy = path[i].y - path[i - 1].y;
    const int steps = std::max(1, static_cast<int>(std::ceil(2 * std::hypot(dx, dy))));
    for (int s = (i == 1 ? 0 : 1); s <= steps; ++s) {
      stamp(path[i - 1].x + dx * s / steps, path[i - 1].y + dy * s / steps);
    }
  }
}

}  // namespace

uint32_t Annotation::DefaultColour(uint8_t value) {
  // Colour-blind-safe palette (Okabe-Ito), then repeats.
  static const uint32_t kPalette[] = {0xE69F00, 0x56B4E9, 0x009E73, 0xF0E442, 0x0072B2, 0xD55E00, 0xCC79A7};
  return value == 0 ? 0 : kPalette[(value - 1) % 7];
}

Annotation::Annotation(const VolumeShape& shape)
    : labels_(Volume::Create({shape.z, shape.y, shape.x, 1}, DType::kUInt8).value()), counts_(256, 0) {
  // All unlabelled, and nothing read: the zero pages stay unmapped until painted.
  counts_[0] = labels_.shape().elements();
}

Annotation::Annotation(Volume labels) : labels_(std::move(labels)), counts_(256, 0) {
  // Mostly unlabelled: whole 8-byte words of zeros are counted at once (a 512³ volume in
  // tens of milliseconds rather than half a second).
  const uint8_t* p = labels_.data<uint8_t>();
  const int64_t n = labels_.shape().elements();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, p + i, 8);
    if (word == 0) {
      counts_[0] += 8;
    } else {
      for (int k = 0; k < 8; ++k) ++counts_[p[i + k]];
    }
  }
  for (; i < n; ++i) ++counts_[p[i]];
}

StatusOr<Annotation> Annotation::FromLabels(Volume labels, std::vector<LabelClass> classes) {
  if (labels.dtype() != DType::kUInt8 || labels.shape().c != 1) {
    return InvalidArgumentError("labels must be a single-channel uint8 volume");
  }
  Annotation a(std::move(labels));
  int max = 0;
  for (int v = 1; v < 256; ++v) {
    if (a.counts_[v] > 0) max = v;
  }
  for (size_t v = classes.size() + 1; v <= static_cast<size_t>(max); ++v) {
    classes.push_back({"class " + std::to_string(v), DefaultColour(static_cast<uint8_t>(v))});
  }
  if (classes.size() > 255) return InvalidArgumentError("at most 255 classes");
  a.classes_ = std::move(classes);
  return a;
}

StatusOr<uint8_t> Annotation::AddClass(const std::string& name, uint32_t rgb) {
  if (classes_.size() >= 255) return ResourceExhaustedError("at most 255 classes");
  if (name.empty() || name.size() > 64) return InvalidArgumentError("a class name has 1 to 64 characters");
  const auto value = static_cast<uint8_t>(classes_.size() + 1);
  classes_.push_back({name, rgb == 0 ? DefaultColour(value) : rgb});
  ++revision_;
  return value;
}

Status Annotation::RenameClass(uint8_t value, const std::string& name) {
  if (value == 0 || value > classes_.size()) return NotFoundError("no class " + std::to_string(value));
  if (name.empty() || name.size() > 64) return InvalidArgumentError("a class name has 1 to 64 characters");
  classes_[value - 1].name = name;
  ++revision_;
  return Status::Ok();
}

Status Annotation::SetColour(uint8_t value, uint32_t rgb) {
  if (value == 0 || value > classes_.size()) return NotFoundError("no class " + std::to_string(value));
  classes_[value - 1].rgb = rgb & 0xFFFFFF;
  ++revision_;
  return Status::Ok();
}

StatusOr<Patch> Annotation::Stroke(int64_t z, const std::vector<Point>& path, double radius, uint8_t value) {
  if (value > classes_.size()) return InvalidArgumentError("no class " + std::to_string(value) + " to paint");
  return Paint(z, path, radius, value, nullptr);
}

StatusOr<Patch> Annotation::Accept(int64_t z, const std::vector<Point>& path, double radius,
                                   const uint8_t* prediction) {
  if (prediction == nullptr) return InvalidArgumentError("no prediction to accept");
  return Paint(z, path, radius, 0, prediction);
}

StatusOr<Patch> Annotation::Paint(int64_t z, const std::vector<Point>& path, double radius, uint8_t value,
                                  const uint8_t* prediction) {
  const VolumeShape& s = labels_.shape();
  if (z < 0 || z >= s.z) return OutOfRangeError("no slice " + std::to_string(z));
  if (path.empty()) return InvalidArgumentError("a stroke needs at least one point");
  if (!(radius >= 0.5 && radius <= 512)) return InvalidArgumentError("brush radius must be 0.5 to 512 pixels");
  double ya = 1e300, yb = -1e300, xa = 1e300, xb = -1e300;
  for (const Point& p : path) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) return InvalidArgumentError("stroke points must be finite");
    ya = std::min(ya, p.y), yb = std::max(yb, p.y), xa = std::min(xa, p.x), xb = std::max(xb, p.x);
  }
  Patch patch;
  patch.z = z;
  patch.y0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(ya - radius)));
  patch.x0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(xa - radius)));
  const int64_t y1 = std::min<int64_t>(s.y, static_cast<int64_t>(std::ceil(yb + radius)) + 1);
  const int64_t x1 = std::min<int64_t>(s.x, static_cast<int64_t>(std::ceil(xb + radius)) + 1);
  if (y1 <= patch.y0 || x1 <= patch.x0) return Patch{};  // entirely outside the image
  patch.height = y1 - patch.y0;
  patch.width = x1 - patch.x0;
  std::vector<uint8_t> mask(static_cast<size_t>(patch.height * patch.width), 0);
  RasterizeBrush(path, radius, patch.y0, patch.x0, patch.height, patch.width, &mask);
  uint8_t* slice = labels_.slice_bytes_at(z);
  patch.before.resize(mask.size());
  patch.after.resize(mask.size());
  bool changed = false;
  for (int64_t y = 0; y < patch.height; ++y) {
    const int64_t row = (patch.y0 + y) * s.x + patch.x0;
    std::memcpy(&patch.before[static_cast<size_t>(y * patch.width)], slice + row, static_cast<size_t>(patch.width));
    for (int64_t x = 0; x < patch.width; ++x) {
      const size_t i = static_cast<size_t>(y * patch.width + x);
      const uint8_t old = patch.before[i];
      const uint8_t now = mask[i] ? (prediction ? prediction[row + x] : value) : old;
      patch.after[i] = now;
      changed |= now != old;
    }
  }
  if (!changed) return Patch{};
  Apply(patch, true);
  undo_.push_back(patch);
  if (undo_.size() > kMaxUndo) undo_.erase(undo_.begin());
  redo_.clear();
  return patch;
}

void Annotation::Apply(const Patch& p, bool forward) {
  const std::vector<uint8_t>& from = forward ? p.before : p.after;
  const std::vector<uint8_t>& to = forward ? p.after : p.before;
  uint8_t* slice = labels_.slice_bytes_at(p.z);
  ++revision_;
  for (int64_t y = 0; y < p.height; ++y) {
    uint8_t* row = slice + (p.y0 + y) * labels_.shape().x + p.x0;
    for (int64_t x = 0; x < p.width; ++x) {
      const size_t i = static_cast<size_t>(y * p.width + x);
      if (from[i] == to[i]) continue;
      --counts_[from[i]];
      ++counts_[to[i]];
      row[x] = to[i];
    }
  }
}

bool Annotation::Undo() {
  if (undo_.empty()) return false;
  Apply(undo_.back(), false);
  redo_.push_back(std::move(undo_.back()));
  undo_.pop_back();
  return true;
}

bool Annotation::Redo() {
  if (redo_.empty()) return false;
  Apply(redo_.back(), true);
  undo_.push_back(std::move(redo_.back()));
  redo_.pop_back();
  return true;
}

int64_t Annotation::labelled() const { return labels_.shape().elements() - counts_[0]; }

Json Annotation::ClassesToJson() const {
  Json j = Json::array();
  for (const LabelClass& c : classes_) {
    char rgb[8];
    std::snprintf(rgb, sizeof(rgb), "#%06X", c.rgb & 0xFFFFFF);
    j.push_back({{"name", c.name}, {"colour", rgb}});
  }
  return j;
}

StatusOr<std::vector<LabelClass>> Annotation::ClassesFromJson(const Json& j) {
  if (!j.is_array() || j.size() > 255) return InvalidArgumentError("classes must be a list of at most 255");
  std::vector<LabelClass> out;
  for (const Json& c : j) {
    JsonReader r(c, "class");
    LabelClass lc;
    lc.name = r.String("name", 64);
    const std::string colour = r.String("colour", 7);
    IDLEGRID_RETURN_IF_ERROR(r.Finish());
    unsigned v = 0;
    char tail = 0;
    if (colour.size() != 7 || std::sscanf(colour.c_str(), "#%6x%c", &v, &tail) != 1) {
      return InvalidArgumentError("class colours are \"#RRGGBB\", not \"" + colour + "\"");
    }
    lc.rgb = v;
    out.push_back(lc);
  }
  return out;
}

}  // namespace idlegrid::client
