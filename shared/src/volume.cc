#include "idlegrid/shared/volume.h"

#include <algorithm>

namespace idlegrid {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kUInt8: return 1;
    case DType::kUInt16: return 2;
    case DType::kFloat32: return 4;
  }
  return 1;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kUInt8: return "uint8";
    case DType::kUInt16: return "uint16";
    case DType::kFloat32: return "float32";
  }
  return "?";
}

StatusOr<DType> ParseDType(const std::string& name) {
  if (name == "uint8") return DType::kUInt8;
  if (name == "uint16") return DType::kUInt16;
  if (name == "float32") return DType::kFloat32;
  return InvalidArgumentError("unknown sample type \"" + name +
                              "\" (expected uint8, uint16 or float32)");
}

std::string VolumeShape::ToString() const {
  return std::to_string(z) + "x" + std::to_string(y) + "x" + std::to_string(x) + "x" +
         std::to_string(c) + " (ZxYxXxC)";
}

StatusOr<Volume> Volume::Create(VolumeShape shape, DType dtype, uint64_t max_bytes) {
  // Zero from calloc: untouched pages of a large volume stay unmapped until written.
  return Allocate(shape, dtype, max_bytes, /*zeroed=*/true);
}

StatusOr<Volume> Volume::CreateUninitialized(VolumeShape shape, DType dtype, uint64_t max_bytes) {
  return Allocate(shape, dtype, max_bytes, /*zeroed=*/false);
}

StatusOr<Volume> Volume::Allocate(VolumeShape shape, DType dtype, uint64_t max_bytes, bool zeroed) {
  auto bad = [](int64_t v, int64_t max) { return v < 1 || v > max; };
  if (bad(shape.z, kMaxVolumeExtent) || bad(shape.y, kMaxVolumeExtent) ||
      bad(shape.x, kMaxVolumeExtent) || bad(shape.c, kMaxVolumeChannels)) {
    return InvalidArgumentError("invalid volume shape " + shape.ToString());
  }
  uint64_t bytes = DTypeSize(dtype);
  bool overflow = false;
  for (int64_t factor : {shape.z, shape.y, shape.x, shape.c}) {
    overflow = overflow || __builtin_mul_overflow(bytes, static_cast<uint64_t>(factor), &bytes);
  }
  if (overflow || bytes > max_bytes) {
    return ResourceExhaustedError("volume " + shape.ToString() + " of " + DTypeName(dtype) +
                                  " exceeds the memory limit of " + std::to_string(max_bytes) +
                                  " bytes");
  }
  Volume v;
  v.shape_ = shape;
  v.dtype_ = dtype;
  v.data_ = Storage(internal::NoInitAllocator<uint8_t>(zeroed));
  v.data_.resize(static_cast<size_t>(bytes));
  return v;
}

float Volume::GetAsFloat(int64_t i) const {
  switch (dtype_) {
    case DType::kUInt8: return static_cast<float>(data_[static_cast<size_t>(i)]);
    case DType::kUInt16: return static_cast<float>(data<uint16_t>()[i]);
    case DType::kFloat32: return data<float>()[i];
  }
  return 0.0f;
}

SliceRegion SliceRegion::Whole(int64_t depth) { return Range(depth, 0, depth); }

SliceRegion SliceRegion::Range(int64_t depth, int64_t begin, int64_t end) {
  SliceRegion r;
  r.depth = depth;
  if (begin < end) r.runs.emplace_back(begin, end);
  return r;
}

SliceRegion SliceRegion::Around(const std::vector<int64_t>& slices, int64_t halo, int64_t depth,
                                int64_t frames) {
  std::vector<int64_t> sorted = slices;
  std::sort(sorted.begin(), sorted.end());
  SliceRegion r;
  r.depth = depth;
  r.frames = std::max<int64_t>(frames, 1);
  for (int64_t z : sorted) {
    const int64_t lo = r.FrameStart(z), hi = std::min(depth, lo + r.FrameDepth());
    const int64_t b = std::max<int64_t>(lo, z - halo), e = std::min(hi, z + halo + 1);
    if (b >= e) continue;
    if (!r.runs.empty() && b <= r.runs.back().second) {
      r.runs.back().second = std::max(r.runs.back().second, e);
    } else {
      r.runs.emplace_back(b, e);
    }
  }
  return r;
}

int64_t SliceRegion::slices() const {
  int64_t n = 0;
  for (const auto& [b, e] : runs) n += e - b;
  return n;
}

int64_t SliceRegion::Local(int64_t z) const {
  int64_t before = 0;
  for (const auto& [b, e] : runs) {
    if (z < b) return -1;
    if (z < e) return before + (z - b);
    before += e - b;
  }
  return -1;
}

int64_t SliceRegion::Global(int64_t i) const {
  for (const auto& [b, e] : runs) {
    if (i < e - b) return b + i;
    i -= e - b;
  }
  return -1;
}

Status SliceRegion::Validate(const std::string& where) const {
  if (depth < 1 || depth > kMaxVolumeExtent) {
    return InvalidArgumentError(where + ".depth " + std::to_string(depth) + " is out of range");
  }
  if (frames < 1 || depth % frames != 0) {
    return InvalidArgumentError(where + ".frames " + std::to_string(frames) + " does not divide its " +
                                std::to_string(depth) + " slices into time points");
  }
  if (runs.empty()) return InvalidArgumentError(where + " holds no slices");
  int64_t last_end = -1;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& [b, e] = runs[i];
    if (b < 0 || e > depth || b >= e || b <= last_end) {
      return InvalidArgumentError(where + ".runs[" + std::to_string(i) + "] [" + std::to_string(b) +
                                  ", " + std::to_string(e) + ") is empty, out of order or outside " +
                                  std::to_string(depth) + " slices");
    }
    last_end = e;
  }
  return Status::Ok();
}

StatusOr<std::vector<SlabRange>> PlanSlabs(int64_t depth, int64_t slab_depth, int64_t halo) {
  if (depth < 1) return InvalidArgumentError("volume depth must be positive");
  if (slab_depth < 1) return InvalidArgumentError("slab depth must be positive");
  if (halo < 0) return InvalidArgumentError("halo must not be negative");
  std::vector<SlabRange> slabs;
  for (int64_t z = 0; z < depth; z += slab_depth) {
    SlabRange s;
    s.z_begin = z;
    s.z_end = std::min(depth, z + slab_depth);
    s.halo_before = std::min(halo, s.z_begin);
    s.halo_after = std::min(halo, depth - s.z_end);
    slabs.push_back(s);
  }
  return slabs;
}

StatusOr<std::vector<SlabRange>> PlanSeriesSlabs(int64_t depth, int64_t frames, int64_t z_begin,
                                                 int64_t z_end, int64_t slab_depth, int64_t halo) {
  if (frames < 1 || depth < 1 || depth % frames != 0) {
    return InvalidArgumentError(std::to_string(depth) + " slices are not " + std::to_string(frames) +
                                " time points of equal depth");
  }
  if (z_begin < 0 || z_begin >= z_end || z_end > depth) {
    return InvalidArgumentError("slices [" + std::to_string(z_begin) + ", " + std::to_string(z_end) +
                                ") are not inside a volume of " + std::to_string(depth));
  }
  const int64_t f = depth / frames;
  std::vector<SlabRange> out;
  for (int64_t t0 = z_begin / f * f; t0 < z_end; t0 += f) {
    const int64_t b = std::max(z_begin, t0), e = std::min(z_end, t0 + f);
    IDLEGRID_ASSIGN_OR_RETURN(std::vector<SlabRange> slabs, PlanSlabs(e - b, slab_depth, 0));
    for (SlabRange& s : slabs) {  // into the series' slices, halos clipped to the time point
      s.z_begin += b;
      s.z_end += b;
      s.halo_before = std::min(halo, s.z_begin - t0);
      s.halo_after = std::min(halo, t0 + f - s.z_end);
      out.push_back(s);
    }
  }
  return out;
}

StatusOr<Volume> ExtractSlab(const Volume& volume, const SlabRange& slab) {
  if (slab.halo_before < 0 || slab.halo_after < 0 || slab.z_begin >= slab.z_end ||
      slab.read_begin() < 0 || slab.read_end() > volume.shape().z) {
    return OutOfRangeError("slab [" + std::to_string(slab.read_begin()) + ", " +
                           std::to_string(slab.read_end()) + ") is outside a volume of depth " +
                           std::to_string(volume.shape().z));
  }
  VolumeShape shape = volume.shape();
  shape.z = slab.read_end() - slab.read_begin();
  IDLEGRID_ASSIGN_OR_RETURN(Volume out, Volume::CreateUninitialized(shape, volume.dtype()));
  std::memcpy(out.bytes(), volume.slice_bytes_at(slab.read_begin()), out.size_bytes());
  return out;
}

StatusOr<Volume> ExtractRegion(const Volume& volume, const SliceRegion& region) {
  IDLEGRID_RETURN_IF_ERROR(region.Validate());
  if (region.depth != volume.shape().z) {
    return InvalidArgumentError("a region of " + std::to_string(region.depth) + " slices does not fit a volume of " +
                                std::to_string(volume.shape().z));
  }
  VolumeShape shape = volume.shape();
  shape.z = region.slices();
  IDLEGRID_ASSIGN_OR_RETURN(Volume out, Volume::CreateUninitialized(shape, volume.dtype()));
  int64_t at = 0;
  for (const auto& [b, e] : region.runs) {
    std::memcpy(out.slice_bytes_at(at), volume.slice_bytes_at(b), static_cast<size_t>(e - b) * volume.slice_bytes());
    at += e - b;
  }
  return out;
}

Status StitchSlab(const Volume& slab_volume, const SlabRange& slab, Volume* out) {
  const VolumeShape& s = slab_volume.shape();
  const VolumeShape& o = out->shape();
  if (s.y != o.y || s.x != o.x || s.c != o.c || slab_volume.dtype() != out->dtype()) {
    return InvalidArgumentError("slab " + s.ToString() + " " + DTypeName(slab_volume.dtype()) +
                                " does not fit volume " + o.ToString() + " " +
                                DTypeName(out->dtype()));
  }
  if (s.z != slab.read_end() - slab.read_begin()) {
    return InvalidArgumentError("slab volume has " + std::to_string(s.z) + " slices, expected " +
                                std::to_string(slab.read_end() - slab.read_begin()));
  }
  if (slab.z_begin < 0 || slab.z_end > o.z || slab.z_begin >= slab.z_end) {
    return OutOfRangeError("slab core [" + std::to_string(slab.z_begin) + ", " +
                           std::to_string(slab.z_end) + ") is outside the output");
  }
  std::memcpy(out->slice_bytes_at(slab.z_begin), slab_volume.slice_bytes_at(slab.halo_before),
              static_cast<size_t>(slab.depth()) * out->slice_bytes());
  return Status::Ok();
}

}  // namespace idlegrid
