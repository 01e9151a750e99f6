#include "idlegrid/client/slice_view.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "idlegrid/shared/tiff_io.h"

namespace idlegrid::client {
namespace {

template <typename F>
void ForEachValue(const Volume& v, int64_t begin, int64_t count, int64_t stride, F&& f) {
  switch (v.dtype()) {
    case DType::kUInt8: {
      const uint8_t* p = v.data<uint8_t>() + begin;
      for (int64_t i = 0; i < count; ++i) f(i, static_cast<double>(p[i * stride]));
      break;
    }
    case DType::kUInt16: {
      const uint16_t* p = v.data<uint16_t>() + begin;
      for (int64_t i = 0; i < count; ++i) f(i, static_cast<double>(p[i * stride]));
      break;
    }
    case DType::kFloat32: {
      const float* p = v.data<float>() + begin;
      for (int64_t i = 0; i < count; ++i) f(i, static_cast<double>(p[i * stride]));
      break;
    }
  }
}

}  // namespace

StatusOr<std::unique_ptr<LazyStack>> LazyStack::Open(const std::string& path, size_t cache_slices) {
  StatusOr<TiffInfo> info = ProbeTiff(path);
  if (!info.ok()) return InvalidArgumentError(path + " is not a volume idlegrid can read: " + info.status().message());
  if (info->shape.c != 1) {
    return InvalidArgumentError(path + " has " + std::to_string(info->shape.c) +
                                " channels; the wizard works on single-channel volumes");
  }
  std::unique_ptr<LazyStack> s(new LazyStack());
  s->path_ = path;
  s->shape_ = info->shape;
  s->dtype_ = info->dtype;
  s->frames_ = info->frames;
  s->capacity_ = std::max<size_t>(1, cache_slices);
  return s;
}

StatusOr<std::shared_ptr<const Volume>> LazyStack::Slice(int64_t z) {
  if (z < 0 || z >= shape_.z) return OutOfRangeError("slice " + std::to_string(z) + " is outside the stack");
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
      if (it->first != z) continue;
      cache_.splice(cache_.begin(), cache_, it);
      return cache_.front().second;
    }
  }
  TiffReadOptions o;
  o.z_begin = z;
  o.z_end = z + 1;
  StatusOr<Volume> v = ReadTiff(path_, o);  // outside the lock: slow, and other slices may be cached meanwhile
  if (!v.ok()) return v.status();
  auto slice = std::make_shared<const Volume>(std::move(*v));
  std::lock_guard<std::mutex> lock(mu_);
  cache_.emplace_front(z, slice);
  while (cache_.size() > capacity_) cache_.pop_back();
  return slice;
}


Window AutoWindow(const Volume& v, int64_t z, double low_pct, double high_pct) {
  const VolumeShape& s = v.shape();
  const int64_t n = s.y * s.x;
  // At most ~64k samples on a regular stride: percentiles of a slice do not need every pixel.
  const int64_t stride = std::max<int64_t>(1, n / 65536);
  std::vector<double> values;
  values.reserve(static_cast<size_t>(n / stride + 1));
  ForEachValue(v, z * n * s.c, (n + stride - 1) / stride, stride * s.c, [&](int64_t, double x) {
    if (std::isfinite(x)) values.push_back(x);
  });
  if (values.empty()) return {0, 1};
  auto pick = [&](double pct) {
    const size_t k = static_cast<size_t>(std::clamp(pct / 100, 0.0, 1.0) * static_cast<double>(values.size() - 1));
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
    return values[k];
  };
  Window w{pick(low_pct), pick(high_pct)};
  if (!(w.hi > w.lo)) w.hi = w.lo + 1;
  return w;
}

Window FullRange(const Volume& v, int64_t z) {
  if (v.dtype() == DType::kUInt8) return {0, 255};
  if (v.dtype() == DType::kUInt16) return {0, 65535};
  return AutoWindow(v, z, 0, 100);
}

std::vector<uint8_t> RenderGray(const Volume& v, int64_t z, Window w) {
  const VolumeShape& s = v.shape();
  const int64_t n = s.y * s.x;
  std::vector<uint8_t> rgb(static_cast<size_t>(n * 3));
  const double scale = w.hi > w.lo ? 255.0 / (w.hi - w.lo) : 0;
  ForEachValue(v, z * n * s.c, n, s.c, [&](int64_t i, double x) {
    double g = (x - w.lo) * scale;
    g = std::isfinite(g) ? std::clamp(g, 0.0, 255.0) : 0.0;
    const auto b = static_cast<uint8_t>(g + 0.5);
    uint8_t* p = rgb.data() + 3 * i;
    p[0] = p[1] = p[2] = b;
  });
  return rgb;
}

void BlendLabels(const Volume& labels, int64_t z, const std::vector<uint32_t>& colours, double alpha,
                 std::vector<uint8_t>* rgb, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  const VolumeShape& s = labels.shape();
  if (labels.dtype() != DType::kUInt8 || z < 0 || z >= s.z || rgb->size() < static_cast<size_t>(s.y * s.x * 3)) return;
  if (y1 < 0 || y1 > s.y) y1 = s.y;
  if (x1 < 0 || x1 > s.x) x1 = s.x;
  y0 = std::max<int64_t>(0, y0);
  x0 = std::max<int64_t>(0, x0);
  const int a = static_cast<int>(std::lround(std::clamp(alpha, 0.0, 1.0) * 256));
  const uint8_t* l = labels.data<uint8_t>() + z * s.y * s.x;
  for (int64_t y = y0; y < y1; ++y) {
    for (int64_t x = x0; x < x1; ++x) {
      const uint8_t v = l[y * s.x + x];
      if (v == 0 || v > colours.size()) continue;
      const uint32_t c = colours[v - 1];
      uint8_t* p = rgb->data() + 3 * (y * s.x + x);
      const int rgbc[3] = {static_cast<int>(c >> 16 & 0xFF), static_cast<int>(c >> 8 & 0xFF), static_cast<int>(c & 0xFF)};
      for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>((p[k] * (256 - a) + rgbc[k] * a) >> 8);
    }
  }
}

int64_t SeriesIndex::Global(int64_t t, int64_t z) const {
  const int64_t d = std::max<int64_t>(depth(), 1);
  return std::clamp<int64_t>(std::clamp<int64_t>(t, 0, std::max<int64_t>(frames, 1) - 1) * d + std::clamp<int64_t>(z, 0, d - 1),
                             0, std::max<int64_t>(slices, 1) - 1);
}

std::string SeriesIndex::Describe(int64_t global) const {
  const std::string slice = "lice " + std::to_string(Slice(global) + 1) + " of " + std::to_string(depth());
  if (frames <= 1) return "S" + slice;
  return "Time " + std::to_string(Time(global) + 1) + " of " + std::to_string(frames) + ", s" + slice;
}

StatusOr<Volume> ExtractPlane(const Volume& v, Plane plane, int64_t index, int64_t z_begin, int64_t z_end) {
  const VolumeShape& s = v.shape();
  if (s.c != 1) return InvalidArgumentError("planes of single-channel volumes only");
  if (z_end < 0) z_end = s.z;
  if (z_begin < 0 || z_begin >= z_end || z_end > s.z) return OutOfRangeError("slices outside the volume");
  const int64_t limit = plane == Plane::kXY ? s.z : plane == Plane::kXZ ? s.y : s.x;
  if (index < 0 || index >= limit) return OutOfRangeError("plane index " + std::to_string(index) + " is outside the volume");
  const int64_t zn = z_end - z_begin;
  VolumeShape out{1, plane == Plane::kXY ? s.y : zn, plane == Plane::kYZ ? s.y : s.x, 1};
  IDLEGRID_ASSIGN_OR_RETURN(Volume p, Volume::CreateUninitialized(out, v.dtype()));
  const size_t elem = DTypeSize(v.dtype());
  const uint8_t* src = v.bytes();
  uint8_t* dst = p.bytes();
  switch (plane) {
    case Plane::kXY:
      std::memcpy(dst, v.slice_bytes_at(index), v.slice_bytes());
      break;
    case Plane::kXZ:  // row y=index of every slice
      for (int64_t z = 0; z < zn; ++z) {
        std::memcpy(dst + static_cast<size_t>(z * s.x) * elem, src + static_cast<size_t>(v.Index(z_begin + z, index, 0)) * elem,
                    static_cast<size_t>(s.x) * elem);
      }
      break;
    case Plane::kYZ:  // column x=index of every slice
      for (int64_t z = 0; z < zn; ++z) {
        for (int64_t y = 0; y < s.y; ++y) {
          std::memcpy(dst + static_cast<size_t>(z * s.y + y) * elem,
                      src + static_cast<size_t>(v.Index(z_begin + z, y, index)) * elem, elem);
        }
      }
      break;
  }
  return p;
}

StatusOr<Volume> Overview::Through(Plane plane, int64_t index, int64_t z_begin, int64_t z_end) const {
  const int64_t limit = plane == Plane::kXY ? shape.z : plane == Plane::kXZ ? shape.y : shape.x;
  if (index < 0 || index >= limit) return OutOfRangeError("plane index " + std::to_string(index) + " is outside the volume");
  return ExtractPlane(reduced, plane, plane == Plane::kXY ? index : index / std::max<int64_t>(factor, 1), z_begin, z_end);
}

std::vector<uint32_t> UncertaintyStrip(const std::map<int64_t, double>& uncertainty, int64_t first, int64_t count,
                                       int64_t width) {
  std::vector<uint32_t> out(static_cast<size_t>(std::max<int64_t>(width, 0)), 0xE0E0E0);
  if (count <= 0 || width <= 0 || uncertainty.empty()) return out;
  // Relative to the review's own range: barely trained candidates are unsure everywhere,
  // and the strip must still show where most.
  double least = 1, most = 0;
  for (const auto& [z, u] : uncertainty) least = std::min(least, u), most = std::max(most, u);
  const double span = most - least;
  for (int64_t c = 0; c < width; ++c) {
    // The slices this column covers (at least one).
    const int64_t lo = first + c * count / width, hi = std::max(lo + 1, first + (c + 1) * count / width);
    double worst = -1;
    for (auto it = uncertainty.lower_bound(lo); it != uncertainty.end() && it->first < hi; ++it) worst = std::max(worst, it->second);
    if (worst < 0) continue;
    const double u = span > 1e-9 ? std::clamp((worst - least) / span, 0.0, 1.0) : 1.0;
    // Pale yellow-white (255, 245, 200) to deep red (180, 0, 0).
    const auto mix = [u](double a, double b) { return static_cast<uint32_t>(std::lround(a + (b - a) * u)); };
    out[static_cast<size_t>(c)] = mix(255, 180) << 16 | mix(245, 0) << 8 | mix(200, 0);
  }
  return out;
}

int64_t OverviewFactor(const VolumeShape& shape, DType dtype, int64_t budget_bytes) {
  auto bytes = [&](int64_t f) {
    return static_cast<double>(shape.z) * static_cast<double>((shape.y + f - 1) / f) *
           static_cast<double>((shape.x + f - 1) / f) * static_cast<double>(std::max<int64_t>(shape.c, 1) * DTypeSize(dtype));
  };
  int64_t f = 1;
  while (f < std::max(shape.y, shape.x) && bytes(f) > static_cast<double>(budget_bytes)) ++f;
  return f;
}

StatusOr<Overview> BuildOverview(const std::string& path, int64_t factor,
                                 const std::function<bool(int64_t done, int64_t total)>& progress) {
  if (factor < 1) return InvalidArgumentError("overview factor " + std::to_string(factor) + " must be at least 1");
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffStackReader> reader, TiffStackReader::Open(path));
  const TiffInfo& info = reader->info();
  const VolumeShape& s = info.shape;
  if (s.c != 1) return InvalidArgumentError(path + ": overviews of single-channel stacks only");
  Overview o;
  o.factor = factor;
  o.shape = s;
  const int64_t ry = (s.y + factor - 1) / factor, rx = (s.x + factor - 1) / factor;
  IDLEGRID_ASSIGN_OR_RETURN(o.reduced, Volume::CreateUninitialized({s.z, ry, rx, 1}, info.dtype));
  const size_t elem = DTypeSize(info.dtype);
  for (int64_t z = 0; z < s.z; ++z) {
    IDLEGRID_ASSIGN_OR_RETURN(Volume slice, reader->ReadSlices(z, z + 1));
    uint8_t* dst = o.reduced.slice_bytes_at(z);
    for (int64_t y = 0; y < ry; ++y) {
      const uint8_t* row = slice.bytes() + static_cast<size_t>(y * factor * s.x) * elem;
      for (int64_t x = 0; x < rx; ++x) {
        std::memcpy(dst + static_cast<size_t>(y * rx + x) * elem, row + static_cast<size_t>(x * factor) * elem, elem);
      }
    }
    if (progress && !progress(z + 1, s.z)) return CancelledError("overview of " + path + " stopped");
  }
  return o;
}

}  // namespace idlegrid::client
