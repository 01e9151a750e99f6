// HDF5 volumes (libhdf5), as ilastik, h5py and many beamlines store them: one dataset of a
// file, named "file.h5:/path/to/dataset". Read a range of slices at a time (a hyperslab:
// never the whole dataset), written slice by slice, chunked and Deflate-compressed.
//
// Where HDF5 is parsed: only on the user's own machine (the CLI and the wizard convert a
// dataset to a TIFF stack before upload, and a fetched TIFF to a dataset). The work server
// and the nodes move and read TIFF alone, so a hostile HDF5 file never reaches them.
//
// Axes. A dataset's axes are read from its attributes: ilastik's "axistags" (JSON, e.g.
// {"axes": [{"key": "t"}, {"key": "z"}, ...]}) or a string "axes" such as "TZYX" (what
// Hdf5Writer writes, with axistags too, so ilastik opens the files the right way). Axes
// must come in the order t, z, y, x, c (any may be absent but y and x). Without either
// attribute: 2D is YX, 3D ZYX, 5D TZYXC, and 4D TZYX, or ZYXC when the last extent is at most
// 4 (a colour volume); Hdf5Info::note says how such a file was read. A series (t) is stored
// in Volume slices as TIFF series are: time point t's slice z is slice t * Z + z.
//
// Types: 8/16-bit unsigned and 32-bit float are read as they are; other integer and float
// types (int16, uint32, float64, ...) are converted to float32 by libhdf5 (noted). Strings,
// compounds and the like are refused, naming the dataset.
//
// Errors (missing file or dataset, a group where a dataset was named, malformed files) name
// the file and the dataset; libhdf5's own error stack goes into the message, never stderr.
// libhdf5 is not thread-safe in Debian's serial build: every call here takes one
// process-wide lock, so readers and writers may be used from any thread, one call at a time.
#ifndef IDLEGRID_SHARED_HDF5_IO_H_
#define IDLEGRID_SHARED_HDF5_IO_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "idlegrid/shared/status.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid {

// "file.h5:/group/data" -> {file.h5, /group/data}. The split is at the first ":/" after a
// name ending in .h5, .hdf5, .hdf, .he5 or .nxs; anything else is a plain path (dataset
// empty). A file with an HDF5 suffix and no dataset: dataset empty (ProbeHdf5 then
// picks the file's only 3D+ dataset, or lists them).
struct VolumePath {
  std::string file;
  std::string dataset;
  bool hdf5 = false;  // an HDF5 name (with or without a dataset)
  std::string ToString() const { return dataset.empty() ? file : file + ":" + dataset; }
};
VolumePath ParseVolumePath(const std::string& spec);

struct Hdf5Info {
  VolumeShape shape;  // z = frames x slices per time point
  DType dtype = DType::kUInt8;
  int64_t frames = 1;
  std::string dataset;  // the dataset read (the named one, or the only one)
  std::string axes;     // as read, e.g. "TZYX"
  std::string note;     // how an ambiguous or converted dataset was read; empty otherwise
  int64_t chunk_slices = 1;  // slices per chunk along Z (1 when contiguous): read in multiples
};

StatusOr<Hdf5Info> ProbeHdf5(const VolumePath& path);
// The datasets of two or more dimensions in an HDF5 file (at most 64), for a "which one?"
// choice.
StatusOr<std::vector<std::string>> ListHdf5Datasets(const std::string& file);

// Reads ranges of slices of one dataset through one open handle. Memory: the range asked
// for, plus libhdf5's chunk cache (bounded, 64 MiB).
class Hdf5Reader {
 public:
  static StatusOr<std::unique_ptr<Hdf5Reader>> Open(const VolumePath& path,
                                                   uint64_t max_bytes = uint64_t{64} << 30);
  // The same from a file image in memory (the fuzz target; tests).
  static StatusOr<std::unique_ptr<Hdf5Reader>> OpenMemory(std::string_view bytes, const std::string& dataset,
                                                         uint64_t max_bytes = uint64_t{64} << 30);
  ~Hdf5Reader();
  Hdf5Reader(const Hdf5Reader&) = delete;
  Hdf5Reader& operator=(const Hdf5Reader&) = delete;

  const Hdf5Info& info() const;
  // Slices [z_begin, z_end) (z_end < 0: to the end) in Volume order.
  StatusOr<Volume> ReadSlices(int64_t z_begin, int64_t z_end);

 private:
  Hdf5Reader();
  struct State;
  std::unique_ptr<State> state_;
};

struct Hdf5WriteOptions {
  bool deflate = true;  // level 1 with byte shuffling: labels shrink to a fraction
  int64_t frames = 1;   // a series of `frames` time points (axes TZYX[C])
};

// Writes a new file holding one dataset (groups on its path are created). The file appears
// at `path.file` only when Close() succeeds (written beside it, then renamed).
class Hdf5Writer {
 public:
  static StatusOr<std::unique_ptr<Hdf5Writer>> Open(const VolumePath& path, VolumeShape shape, DType dtype,
                                                   const Hdf5WriteOptions& options = {});
  ~Hdf5Writer();  // without Close(): the partial file is deleted
  Hdf5Writer(const Hdf5Writer&) = delete;
  Hdf5Writer& operator=(const Hdf5Writer&) = delete;

  Status Append(const Volume& chunk);  // the next slices (same Y, X, C and dtype)
  Status Close();

 private:
  Hdf5Writer();
  struct State;
  std::unique_ptr<State> state_;
};

// Streamed conversions (a bounded range of slices at a time). `progress(done, total)` is
// called after each range; `cancel` stops between ranges with CANCELLED and leaves nothing.
using SliceProgress = std::function<void(int64_t done, int64_t total)>;
Status ConvertHdf5ToTiff(const VolumePath& src, const std::string& tiff_path, const SliceProgress& progress = {},
                         const std::atomic<bool>* cancel = nullptr);
Status ConvertTiffToHdf5(const std::string& tiff_path, const VolumePath& dst, const SliceProgress& progress = {});

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_HDF5_IO_H_
