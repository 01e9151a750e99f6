// Multi-page TIFF stacks on libtiff, the interchange format with Fiji/ImageJ.
//
// Written files: one page per slice and channel (ImageJ order: channel fastest), uint8,
// uint16 or float32 samples, uncompressed (or Deflate when asked), with an ImageJ hyperstack
// description ("ImageJ=...\nimages=Z*C\nchannels=C\nslices=Z\n...") so Fiji opens them as a
// stack of the right depth. BigTIFF is used automatically when the file would pass 4 GiB.
//
// Read files: any stack of equally-sized pages of 8-bit unsigned, 16-bit unsigned or 32-bit
// float samples (strips or tiles, any compression libtiff decodes), ImageJ hyperstacks with
// channels and time points (frames=T: read as T x Z slices, TiffInfo::frames = T), or
// interleaved multi-sample pages. An ImageJ description with more than 4
// "channels", no "slices" and one page per channel is a Z stack (TiffInfo::note says so). Every malformed, truncated or unsupported
// file is an error value, never a crash; libtiff's messages go into the error, not stderr.
#ifndef IDLEGRID_SHARED_TIFF_IO_H_
#define IDLEGRID_SHARED_TIFF_IO_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "idlegrid/shared/status.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid {

struct TiffInfo {
  VolumeShape shape;
  DType dtype = DType::kUInt8;
  bool bigtiff = false;
  bool imagej = false;  // has an ImageJ description
  // How an ambiguous file was read, for the user (empty when it was not): e.g. tifffile
  // writes a 3D array saved with imagej=True and no axes as "channels=181" and no slices;
  // Fiji would show 181 channels of one slice, and such a stack is read as 181 slices.
  std::string note;
  // An ImageJ hyperstack with frames=T: T time points of shape.z / T slices each, in
  // shape.z (time slowest, as the pages are stored). 1 for a 3D stack.
  int64_t frames = 1;
};

struct TiffReadOptions {
  // Read only slices [z_begin, z_end) (z_end < 0: to the end); memory then scales with the
  // range, not the file.
  int64_t z_begin = 0;
  int64_t z_end = -1;
  uint64_t max_bytes = uint64_t{64} << 30;  // refuse to allocate more than this
};

// Shape and type without reading pixels.
StatusOr<TiffInfo> ProbeTiff(const std::string& path);
StatusOr<Volume> ReadTiff(const std::string& path, const TiffReadOptions& options = {});
// The same from bytes in memory (used for uploads and by the fuzz target).
StatusOr<Volume> ReadTiffFromMemory(std::string_view bytes, const TiffReadOptions& options = {});

// Reads Z ranges of one stack through one open handle. ReadTiff with a range walks the
// TIFF's directory chain from its start on every call; this reader moves forward from where
// it is, so reading a stack range by range costs what its pages cost, and memory is one
// range at a time. Not thread-safe.
class TiffStackReader {
 public:
  static StatusOr<std::unique_ptr<TiffStackReader>> Open(const std::string& path,
                                                        uint64_t max_bytes = uint64_t{64} << 30);
  ~TiffStackReader();
  TiffStackReader(const TiffStackReader&) = delete;
  TiffStackReader& operator=(const TiffStackReader&) = delete;

  const TiffInfo& info() const;
  // Slices [z_begin, z_end) (z_end < 0: to the end); errors name the file.
  StatusOr<Volume> ReadSlices(int64_t z_begin, int64_t z_end);

 private:
  TiffStackReader();
  struct State;
  std::unique_ptr<State> state_;
};

struct TiffWriteOptions {
  // Files whose pixel data would exceed this use BigTIFF (classic TIFF offsets are 32-bit).
  uint64_t bigtiff_threshold_bytes = (uint64_t{4} << 30) - (uint64_t{64} << 20);
  // Physical voxel size for the ImageJ description (0: not written).
  double spacing_z = 0;
  // Deflate-compressed pages (fast level): for label stacks, which are mostly runs of 0.
  bool deflate = false;
  // A time series: the stack's slices are `frames` time points of shape.z / frames slices
  // (ImageJ "frames=", so that Fiji shows T and Z sliders). Must divide shape.z.
  int64_t frames = 1;
};

// Writes a stack slice by slice so that an output never has to be whole in memory. The file
// appears at `path` only when Close() succeeds (written as path + ".part", then renamed).
// Not thread-safe.
class TiffWriter {
 public:
  static StatusOr<std::unique_ptr<TiffWriter>> Open(const std::string& path, VolumeShape shape,
                                                   DType dtype,
                                                   const TiffWriteOptions& options = {});
  ~TiffWriter();  // without Close(): the partial file is deleted
  TiffWriter(const TiffWriter&) = delete;
  TiffWriter& operator=(const TiffWriter&) = delete;

  // Appends the slices of `chunk` (same Y, X, C and dtype; any depth).
  Status Append(const Volume& chunk);
  // Fails unless exactly shape.z slices were appended.
  Status Close();
  bool bigtiff() const { return bigtiff_; }

 private:
  TiffWriter() = default;
  struct State;
  std::unique_ptr<State> state_;
  bool bigtiff_ = false;
};

Status WriteTiff(const std::string& path, const Volume& volume,
                 const TiffWriteOptions& options = {});

// Writes the slices of `region` (a region of src's depth) from the stack `src` into a new
// stack at `dst`, in order, holding at most about `chunk_bytes` of pixels at a time. When
// `cancel` becomes true the copy stops between chunks with CANCELLED (nothing is written).
Status CopyTiffSlices(const std::string& src, const SliceRegion& region, const std::string& dst,
                      const TiffWriteOptions& options = {}, int64_t chunk_bytes = int64_t{64} << 20,
                      const std::atomic<bool>* cancel = nullptr);

// Labels painted on one time point of a series, as the series' labels: writes to `dst` a
// hyperstack of `frames` time points of src's depth, time point `time_point` (0-based) from
// the stack `src` and every other one empty (deflate, so empty slices cost little), a slice
// at a time. INVALID_ARGUMENT names the file when src is itself a series or t is outside.
Status PlaceInSeries(const std::string& src, int64_t frames, int64_t time_point, const std::string& dst);

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_TIFF_IO_H_
