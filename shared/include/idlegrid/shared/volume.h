// Volume: a dense Z x Y x X x C image (channels interleaved, C fastest) of one sample type,
// and slabs: Z ranges with halos that inference runs on independently and that stitch back
// into exactly the original volume. No third-party dependencies (models-only builds use it).
#ifndef IDLEGRID_SHARED_VOLUME_H_
#define IDLEGRID_SHARED_VOLUME_H_

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "idlegrid/shared/status.h"

namespace idlegrid {

enum class DType { kUInt8, kUInt16, kFloat32 };

size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);  // "uint8", "uint16", "float32"
StatusOr<DType> ParseDType(const std::string& name);

template <typename T> struct DTypeOf;
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::kUInt8; };
template <> struct DTypeOf<uint16_t> { static constexpr DType value = DType::kUInt16; };
template <> struct DTypeOf<float> { static constexpr DType value = DType::kFloat32; };

struct VolumeShape {
  int64_t z = 0, y = 0, x = 0, c = 1;
  int64_t voxels() const { return z * y * x; }
  int64_t elements() const { return z * y * x * c; }
  bool operator==(const VolumeShape& o) const {
    return z == o.z && y == o.y && x == o.x && c == o.c;
  }
  bool operator!=(const VolumeShape& o) const { return !(*this == o); }
  std::string ToString() const;  // "64x128x128x1 (ZxYxXxC)"
};

// Limits on any one dimension; the product is bounded by memory, checked on Create.
inline constexpr int64_t kMaxVolumeExtent = int64_t{1} << 20;
inline constexpr int64_t kMaxVolumeChannels = 64;

namespace internal {
// Leaves new elements alone on resize(): filling a volume that is about to be overwritten
// (from a file, a slab) costs as much as reading it. A `zeroed` allocator takes its memory
// from calloc instead: large blocks are fresh pages from the kernel, zero without being
// touched, so a zero volume (a label volume with a few painted slices) holds memory only
// where it is written. Memory from either is freed with free(): all instances are equal.
template <typename T>
struct NoInitAllocator {
  using value_type = T;
  using is_always_equal = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  bool zeroed = false;

  NoInitAllocator() = default;
  explicit NoInitAllocator(bool zero) noexcept : zeroed(zero) {}
  template <typename U>
  NoInitAllocator(const NoInitAllocator<U>& o) noexcept : zeroed(o.zeroed) {}  // NOLINT
  // A copy's contents are copied over: no need to zero its memory first.
  NoInitAllocator select_on_container_copy_construction() const noexcept { return NoInitAllocator(); }

  T* allocate(std::size_t n) {
    void* p = zeroed ? std::calloc(n, sizeof(T)) : std::malloc(n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { std::free(p); }
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  friend bool operator==(const NoInitAllocator&, const NoInitAllocator&) noexcept { return true; }
  friend bool operator!=(const NoInitAllocator&, const NoInitAllocator&) noexcept { return false; }
};
}  // namespace internal

class Volume {
 public:
  Volume() = default;

  // A zero-filled volume. INVALID_ARGUMENT for empty or oversize extents,
  // RESOURCE_EXHAUSTED if it would hold more than max_bytes.
  static StatusOr<Volume> Create(VolumeShape shape, DType dtype,
                                 uint64_t max_bytes = uint64_t{1} << 40);
  // The same with unspecified contents, for callers that overwrite every byte.
  static StatusOr<Volume> CreateUninitialized(VolumeShape shape, DType dtype,
                                              uint64_t max_bytes = uint64_t{1} << 40);

  const VolumeShape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  bool empty() const { return data_.empty(); }
  size_t size_bytes() const { return data_.size(); }
  size_t slice_bytes() const {
    return static_cast<size_t>(shape_.y * shape_.x * shape_.c) * DTypeSize(dtype_);
  }

  uint8_t* bytes() { return data_.data(); }
  const uint8_t* bytes() const { return data_.data(); }
  uint8_t* slice_bytes_at(int64_t z) { return data_.data() + z * slice_bytes(); }
  const uint8_t* slice_bytes_at(int64_t z) const { return data_.data() + z * slice_bytes(); }

  // Typed access; T must match dtype() (checked).
  template <typename T>
  T* data() {
    IDLEGRID_CHECK(DTypeOf<T>::value == dtype_);
    return reinterpret_cast<T*>(data_.data());
  }
  template <typename T>
  const T* data() const {
    IDLEGRID_CHECK(DTypeOf<T>::value == dtype_);
    return reinterpret_cast<const T*>(data_.data());
  }
  int64_t Index(int64_t z, int64_t y, int64_t x, int64_t c = 0) const {
    return ((z * shape_.y + y) * shape_.x + x) * shape_.c + c;
  }
  template <typename T>
  T& at(int64_t z, int64_t y, int64_t x, int64_t c = 0) {
    return data<T>()[Index(z, y, x, c)];
  }
  template <typename T>
  const T& at(int64_t z, int64_t y, int64_t x, int64_t c = 0) const {
    return data<T>()[Index(z, y, x, c)];
  }
  // Value as float whatever the dtype (for statistics and conversion).
  float GetAsFloat(int64_t element_index) const;

  bool operator==(const Volume& o) const {
    return shape_ == o.shape_ && dtype_ == o.dtype_ && data_ == o.data_;
  }

 private:
  VolumeShape shape_;
  DType dtype_ = DType::kUInt8;
  using Storage = std::vector<uint8_t, internal::NoInitAllocator<uint8_t>>;
  static StatusOr<Volume> Allocate(VolumeShape shape, DType dtype, uint64_t max_bytes, bool zeroed);
  Storage data_;
};

// A Z range of the output [z_begin, z_end) and how many slices of context to read on each
// side. A slab volume holds slices [read_begin(), read_end()) of the whole volume.
struct SlabRange {
  int64_t z_begin = 0;
  int64_t z_end = 1;
  int64_t halo_before = 0;
  int64_t halo_after = 0;

  int64_t read_begin() const { return z_begin - halo_before; }
  int64_t read_end() const { return z_end + halo_after; }
  int64_t depth() const { return z_end - z_begin; }
  bool operator==(const SlabRange& o) const {
    return z_begin == o.z_begin && z_end == o.z_end && halo_before == o.halo_before &&
           halo_after == o.halo_after;
  }
};

// Which slices of a volume of `depth` slices a file holds: runs [first, end) in increasing
// order, separated by at least one slice that is not held (adjacent runs are merged). A
// training crop (the labelled slices with the context the network reads) and an inference
// slab (core + halos) are regions; what a unit moves is its region, not the volume. The
// file's slices are the runs' slices in order ("local" indices 0..slices()-1).
//
// A time series (4D) is `frames` time points of depth / frames slices each, stored in the
// order ImageJ stores a hyperstack (time slowest): global slice t * FrameDepth() + z. A
// time point is a volume of its own: context (halos, 3D patches) never crosses from one
// time point into the next. A 3D volume is frames == 1.
struct SliceRegion {
  int64_t depth = 0;
  std::vector<std::pair<int64_t, int64_t>> runs;
  int64_t frames = 1;

  int64_t FrameDepth() const { return frames > 0 ? depth / frames : depth; }
  // The first slice of the time point that holds global slice z.
  int64_t FrameStart(int64_t z) const { return FrameDepth() > 0 ? z / FrameDepth() * FrameDepth() : 0; }

  // Every slice of a volume of `depth`.
  static SliceRegion Whole(int64_t depth);
  // Slices [begin, end).
  static SliceRegion Range(int64_t depth, int64_t begin, int64_t end);
  // Each of `slices` widened by `halo` on both sides, clipped to its time point (to
  // [0, depth) when frames == 1), merged.
  static SliceRegion Around(const std::vector<int64_t>& slices, int64_t halo, int64_t depth,
                            int64_t frames = 1);

  int64_t slices() const;
  bool whole() const { return runs.size() == 1 && runs[0].first == 0 && runs[0].second == depth; }
  // Local index of global slice z, or -1 when the region does not hold it.
  int64_t Local(int64_t z) const;
  // Global slice of local index i (0 <= i < slices()).
  int64_t Global(int64_t i) const;
  // INVALID_ARGUMENT naming `where` unless runs are non-empty, ordered, separated and inside
  // [0, depth), and frames divides depth.
  Status Validate(const std::string& where = "region") const;
  bool operator==(const SliceRegion& o) const {
    return depth == o.depth && runs == o.runs && frames == o.frames;
  }
};

// Splits [0, depth) into consecutive slabs of at most slab_depth slices (the last may be
// shorter) with `halo` slices of context on each side, clipped to the volume.
StatusOr<std::vector<SlabRange>> PlanSlabs(int64_t depth, int64_t slab_depth, int64_t halo);

// The same over slices [z_begin, z_end) of a series of `frames` time points of depth /
// frames slices: slabs never span two time points and their halos are clipped to their own
// time point. frames == 1 and the whole depth: PlanSlabs.
StatusOr<std::vector<SlabRange>> PlanSeriesSlabs(int64_t depth, int64_t frames, int64_t z_begin,
                                                 int64_t z_end, int64_t slab_depth, int64_t halo);

// Copies slices [slab.read_begin(), slab.read_end()) of `volume`.
StatusOr<Volume> ExtractSlab(const Volume& volume, const SlabRange& slab);

// Copies the slices of `region` (a region of volume's depth), in order.
StatusOr<Volume> ExtractRegion(const Volume& volume, const SliceRegion& region);

// Copies the core slices of `slab_volume` (as produced for `slab`, i.e. with its halos)
// into `out` at [z_begin, z_end). Shapes other than Z and the dtype must match.
Status StitchSlab(const Volume& slab_volume, const SlabRange& slab, Volume* out);

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_VOLUME_H_
