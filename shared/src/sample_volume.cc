#include "idlegrid/shared/sample_volume.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace idlegrid {
namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  double Uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  int64_t Index(int64_t n) { return static_cast<int64_t>(gen_() % static_cast<uint64_t>(n)); }
  double Normal() {  // Box-Muller
    double u1 = std::max(Uniform(), 1e-300), u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  std::mt19937_64 gen_;
};

struct Blob {
  double z, y, x, rz, ry, rx;
};

// Separable Gaussian blur along one axis of a Z*Y*X float field (clamped borders).
void BlurAxis(std::vector<float>& f, const VolumeShape& s, int axis, double sigma) {
  int64_t radius = static_cast<int64_t>(std::ceil(3 * sigma));
  std::vector<float> k(static_cast<size_t>(2 * radius + 1));
  double sum = 0;
  for (int64_t i = -radius; i <= radius; ++i) {
    k[static_cast<size_t>(i + radius)] = static_cast<float>(std::exp(-0.5 * i * i / (sigma * sigma)));
    sum += k[static_cast<size_t>(i + radius)];
  }
  for (float& w : k) w = static_cast<float>(w / sum);
  const int64_t n = axis == 0 ? s.z : axis == 1 ? s.y : s.x;
  const int64_t stride = axis == 0 ? s.y * s.x : axis == 1 ? s.x : 1;
  std::vector<float> line(static_cast<size_t>(n));
  for (int64_t a = 0; a < s.z; ++a) {
    for (int64_t b = 0; b < s.y; ++b) {
      for (int64_t c = 0; c < s.x; ++c) {
        // Visit each line once: from its first element along `axis`.
        if ((axis == 0 && a != 0) || (axis == 1 && b != 0) || (axis == 2 && c != 0)) continue;
        int64_t base = (a * s.y + b) * s.x + c;
        for (int64_t i = 0; i < n; ++i) line[static_cast<size_t>(i)] = f[static_cast<size_t>(base + i * stride)];
        for (int64_t i = 0; i < n; ++i) {
          float acc = 0;
          for (int64_t j = -radius; j <= radius; ++j) {
            int64_t t = std::clamp<int64_t>(i + j, 0, n - 1);
            acc += k[static_cast<size_t>(j + radius)] * line[static_cast<size_t>(t)];
          }
          f[static_cast<size_t>(base + i * stride)] = acc;
        }
      }
    }
  }
}

}  // namespace

StatusOr<MaterialsSample> GenerateMaterialsSample(const SampleOptions& o) {
  const VolumeShape s{o.shape.z, o.shape.y, o.shape.x, 1};
  if (o.grains < 1 || o.pores < 0 || o.inclusions < 0 || o.blur_sigma < 0 ||
      o.noise_sigma < 0 || o.brush_radius < 0 || o.labelled_pixels < 0) {
    return InvalidArgumentError("invalid sample options");
  }
  MaterialsSample out;
  IDLEGRID_ASSIGN_OR_RETURN(out.image, Volume::Create(s, DType::kUInt16));
  IDLEGRID_ASSIGN_OR_RETURN(out.truth, Volume::Create(s, DType::kUInt8));
  IDLEGRID_ASSIGN_OR_RETURN(out.scribbles, Volume::Create(s, DType::kUInt8));
  out.label_slice = o.label_slice >= 0 ? std::min(o.label_slice, s.z - 1) : s.z / 2;
  Rng rng(o.seed);

  // Grains: a Voronoi tessellation, each grain a slightly different grey.
  struct Seed { double z, y, x, level; };
  std::vector<Seed> seeds;
  for (int64_t i = 0; i < o.grains; ++i) {
    seeds.push_back({rng.Uniform(0, s.z), rng.Uniform(0, s.y), rng.Uniform(0, s.x),
                     rng.Uniform(0.42, 0.58)});
  }
  auto blobs = [&](int64_t n, double rmin, double rmax) {
    std::vector<Blob> v;
    for (int64_t i = 0; i < n; ++i) {
      double r = rng.Uniform(rmin, rmax);
      v.push_back({rng.Uniform(0, s.z), rng.Uniform(0, s.y), rng.Uniform(0, s.x),
                   r * rng.Uniform(0.7, 1.3), r * rng.Uniform(0.7, 1.3), r * rng.Uniform(0.7, 1.3)});
    }
    return v;
  };
  const double scale = std::min<double>(s.y, s.x) / 160.0;
  std::vector<Blob> pores = blobs(o.pores, 4 * scale, 10 * scale);
  std::vector<Blob> inclusions = blobs(o.inclusions, 2 * scale, 4.5 * scale);
  auto inside = [](const Blob& b, double z, double y, double x) {
    double dz = (z - b.z) / b.rz, dy = (y - b.y) / b.ry, dx = (x - b.x) / b.rx;
    return dz * dz + dy * dy + dx * dx <= 1.0;
  };

  std::vector<float> field(static_cast<size_t>(s.voxels()));
  uint8_t* truth = out.truth.data<uint8_t>();
  for (int64_t z = 0; z < s.z; ++z) {
    for (int64_t y = 0; y < s.y; ++y) {
      for (int64_t x = 0; x < s.x; ++x) {
        size_t i = static_cast<size_t>((z * s.y + y) * s.x + x);
        double best = 1e300, level = 0.5;
        for (const Seed& sd : seeds) {
          double d = (z - sd.z) * (z - sd.z) + (y - sd.y) * (y - sd.y) + (x - sd.x) * (x - sd.x);
          if (d < best) best = d, level = sd.level;
        }
        uint8_t phase = 1;
        for (const Blob& b : pores) {
          if (inside(b, z, y, x)) phase = 2, level = 0.12;
        }
        for (const Blob& b : inclusions) {
          if (inside(b, z, y, x)) phase = 3, level = 0.9;
        }
        truth[i] = phase;
        field[i] = static_cast<float>(level);
      }
    }
  }
  if (o.blur_sigma > 0) {
    for (int axis = 0; axis < 3; ++axis) BlurAxis(field, s, axis, o.blur_sigma);
  }
  uint16_t* image = out.image.data<uint16_t>();
  for (size_t i = 0; i < field.size(); ++i) {
    double v = field[i] + o.noise_sigma * rng.Normal();
    v = std::clamp(v * 50000.0 + 6000.0, 0.0, 65535.0);
    image[i] = static_cast<uint16_t>(std::lround(v));
  }

  // Scribbles: brush strokes (random walks with momentum) on one slice, each dab kept
  // wholly inside one phase as a careful user would paint, until each phase has its share.
  // A user switches to a smaller brush for small features: phases where the brush does
  // not fit (small inclusions) are painted with smaller radii.
  const int64_t z = out.label_slice;
  uint8_t* scrib = out.scribbles.data<uint8_t>() + z * s.y * s.x;
  const uint8_t* tslice = truth + z * s.y * s.x;
  auto disc_inside = [&](int64_t cy, int64_t cx, int64_t r, uint8_t phase) {
    if (cy - r < 0 || cx - r < 0 || cy + r >= s.y || cx + r >= s.x) return false;
    for (int64_t dy = -r; dy <= r; ++dy)
      for (int64_t dx = -r; dx <= r; ++dx)
        if (dy * dy + dx * dx <= r * r && tslice[(cy + dy) * s.x + cx + dx] != phase) return false;
    return true;
  };
  for (uint8_t phase = 1; phase <= 3; ++phase) {
    const int64_t budget = o.labelled_pixels / 3;
    int64_t painted = 0;
    for (int64_t r = o.brush_radius; r >= 0 && painted < budget; --r) {
      for (int64_t attempt = 0; attempt < 5000 && painted < budget; ++attempt) {
        int64_t cy = rng.Index(s.y), cx = rng.Index(s.x);
        if (!disc_inside(cy, cx, r, phase)) continue;
        double angle = rng.Uniform(0, 6.283185307179586);
        double py = static_cast<double>(cy), px = static_cast<double>(cx);
        for (int64_t step = 0; step < 200 && painted < budget; ++step) {
          int64_t iy = std::lround(py), ix = std::lround(px);
          if (!disc_inside(iy, ix, r, phase)) break;
          for (int64_t dy = -r; dy <= r; ++dy)
            for (int64_t dx = -r; dx <= r; ++dx) {
              uint8_t& p = scrib[(iy + dy) * s.x + ix + dx];
              if (dy * dy + dx * dx <= r * r && p == 0) p = phase, ++painted;
            }
          angle += rng.Uniform(-0.35, 0.35);
          py += 1.5 * std::sin(angle);
          px += 1.5 * std::cos(angle);
        }
      }
    }
  }
  return out;
}

}  // namespace idlegrid
