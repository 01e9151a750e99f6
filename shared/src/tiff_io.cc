#include "idlegrid/shared/tiff_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include <tiffio.h>

#include "idlegrid/shared/files.h"

namespace idlegrid {
namespace {

// libtiff may allocate at most this much for one buffer (strip, tile, tag array).
constexpr tmsize_t kMaxLibtiffAlloc = tmsize_t{1} << 30;
constexpr uint64_t kMaxPages = uint64_t{1} << 24;
// ImageJ "channels" without "slices" above this are taken as slices (see ReadLayout).
constexpr int64_t kMaxColourChannels = 4;

// Collects libtiff's messages for one TIFF handle instead of printing them.
struct TiffErrors {
  std::string text;
};

__attribute__((format(printf, 4, 0)))
int OnTiffError(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
  auto* errors = static_cast<TiffErrors*>(user);
  char buf[512];
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  if (errors->text.size() < 2048) {
    if (!errors->text.empty()) errors->text += "; ";
    if (module != nullptr && *module != '\0') errors->text += std::string(module) + ": ";
    errors->text += buf;
  }
  return 1;  // handled: do not call the global handler (stderr)
}

int OnTiffWarning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

struct TiffCloser {
  void operator()(TIFF* t) const { TIFFClose(t); }
};
using TiffPtr = std::unique_ptr<TIFF, TiffCloser>;

struct OptionsDeleter {
  void operator()(TIFFOpenOptions* o) const { TIFFOpenOptionsFree(o); }
};

std::unique_ptr<TIFFOpenOptions, OptionsDeleter> MakeOptions(TiffErrors* errors) {
  std::unique_ptr<TIFFOpenOptions, OptionsDeleter> opts(TIFFOpenOptionsAlloc());
  TIFFOpenOptionsSetMaxSingleMemAlloc(opts.get(), kMaxLibtiffAlloc);
  TIFFOpenOptionsSetErrorHandlerExtR(opts.get(), OnTiffError, errors);
  TIFFOpenOptionsSetWarningHandlerExtR(opts.get(), OnTiffWarning, nullptr);
  return opts;
}

// In-memory source for TIFFClientOpen.
struct MemSource {
  const char* data;
  uint64_t size;
  uint64_t pos;
};

tmsize_t MemRead(thandle_t h, void* buf, tmsize_t n) {
  auto* m = static_cast<MemSource*>(h);
  if (n < 0 || m->pos >= m->size) return 0;
  uint64_t k = std::min<uint64_t>(static_cast<uint64_t>(n), m->size - m->pos);
  std::memcpy(buf, m->data + m->pos, k);
  m->pos += k;
  return static_cast<tmsize_t>(k);
}
tmsize_t MemWrite(thandle_t, void*, tmsize_t) { return -1; }
toff_t MemSeek(thandle_t h, toff_t off, int whence) {
  auto* m = static_cast<MemSource*>(h);
  uint64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->size;
  uint64_t target = base + off;
  if (target < base) return static_cast<toff_t>(-1);  // wrapped
  m->pos = target;
  return m->pos;
}
int MemClose(thandle_t) { return 0; }
toff_t MemSize(thandle_t h) { return static_cast<MemSource*>(h)->size; }
int MemMap(thandle_t, void**, toff_t*) { return 0; }
void MemUnmap(thandle_t, void*, toff_t) {}

// The layout of a stack, read from its first page.
struct Layout {
  uint32_t width = 0, height = 0;
  uint16_t bits = 1, spp = 1, format = SAMPLEFORMAT_UINT;
  DType dtype = DType::kUInt8;
  int64_t pages = 0;
  int64_t channels = 1;
  bool channels_as_pages = false;  // ImageJ hyperstack: one page per channel
  int64_t frames = 1;              // ImageJ hyperstack: time points (shape.z = frames x slices)
  bool imagej = false;
  bool bigtiff = false;
  std::string note;  // how an ambiguous description was read (TiffInfo::note)
  VolumeShape shape;
};

std::map<std::string, std::string> ParseImageJDescription(const char* desc) {
  std::map<std::string, std::string> out;
  std::string s(desc);
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find('\n', start);
    if (end == std::string::npos) end = s.size();
    std::string line = s.substr(start, end - start);
    size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
    start = end + 1;
  }
  return out;
}

// Parses a small positive integer from an ImageJ description; -1 if absent or invalid.
int64_t DescInt(const std::map<std::string, std::string>& desc, const std::string& key) {
  auto it = desc.find(key);
  if (it == desc.end() || it->second.empty() || it->second.size() > 12) return -1;
  int64_t v = 0;
  for (char c : it->second) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

Status PageFields(TIFF* tif, Layout* l) {
  if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &l->width) ||
      !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &l->height)) {
    return DataLossError("TIFF page has no image size");
  }
  TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &l->bits);
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &l->spp);
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &l->format);
  return Status::Ok();
}

std::string FormatError(const std::string& what, const TiffErrors& errors) {
  return errors.text.empty() ? what : what + " (" + errors.text + ")";
}

StatusOr<Layout> ReadLayout(TIFF* tif, TiffErrors* errors) {
  Layout l;
  l.bigtiff = TIFFIsBigTIFF(tif) != 0;
  tdir_t pages = TIFFNumberOfDirectories(tif);
  if (!errors->text.empty()) {
    return DataLossError(FormatError("corrupt or truncated TIFF directory chain", *errors));
  }
  if (pages < 1 || pages > kMaxPages) return DataLossError("TIFF has no readable pages");
  l.pages = pages;
  if (!TIFFSetDirectory(tif, 0)) return DataLossError(FormatError("cannot read TIFF", *errors));
  IDLEGRID_RETURN_IF_ERROR(PageFields(tif, &l));
  if (l.width < 1 || l.height < 1 || l.width > kMaxVolumeExtent ||
      l.height > kMaxVolumeExtent) {
    return InvalidArgumentError("TIFF page size " + std::to_string(l.width) + "x" +
                                std::to_string(l.height) + " is out of range");
  }
  bool uint_format = l.format == SAMPLEFORMAT_UINT || l.format == SAMPLEFORMAT_VOID;
  if (l.bits == 8 && uint_format) {
    l.dtype = DType::kUInt8;
  } else if (l.bits == 16 && uint_format) {
    l.dtype = DType::kUInt16;
  } else if (l.bits == 32 && l.format == SAMPLEFORMAT_IEEEFP) {
    l.dtype = DType::kFloat32;
  } else {
    const char* kind = l.format == SAMPLEFORMAT_INT      ? "signed integer"
                       : l.format == SAMPLEFORMAT_IEEEFP ? "floating-point"
                                                         : "unsigned integer";
    return UnimplementedError("TIFF has " + std::to_string(l.bits) + "-bit " + kind +
                              " samples; supported are 8/16-bit unsigned and 32-bit float "
                              "(convert the image in Fiji: Image > Type)");
  }
  uint16_t planar = PLANARCONFIG_CONTIG, photometric = PHOTOMETRIC_MINISBLACK;
  TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
  TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric);
  if (l.spp < 1 || l.spp > kMaxVolumeChannels) {
    return UnimplementedError("TIFF has " + std::to_string(l.spp) + " samples per pixel");
  }
  if (l.spp > 1 && planar != PLANARCONFIG_CONTIG) {
    return UnimplementedError("TIFF with separate sample planes is not supported");
  }
  if (photometric == PHOTOMETRIC_YCBCR) {
    return UnimplementedError("YCbCr (JPEG-compressed colour) TIFF is not supported");
  }

  int64_t channels = l.spp;
  char* desc = nullptr;
  if (TIFFGetField(tif, TIFFTAG_IMAGEDESCRIPTION, &desc) && desc != nullptr &&
      std::strncmp(desc, "ImageJ=", 7) == 0) {
    l.imagej = true;
    auto fields = ParseImageJDescription(desc);
    const int64_t frames = DescInt(fields, "frames");
    int64_t images = DescInt(fields, "images");
    if (images > 0 && images != l.pages) {
      return DataLossError("TIFF has " + std::to_string(l.pages) +
                           " pages but its ImageJ description says " +
                           std::to_string(images) + " (truncated file?)");
    }
    const int64_t ij_channels = DescInt(fields, "channels"), ij_slices = DescInt(fields, "slices");
    if (l.spp == 1 && ij_channels > 1) {
      const std::string said = "its ImageJ description says channels=" + std::to_string(ij_channels);
      if (ij_slices <= 1 && frames <= 1 && ij_channels == l.pages && ij_channels > kMaxColourChannels) {
        // tifffile's imwrite(path, zyx, imagej=True) without axes writes a Z stack this way;
        // nobody means hundreds of colour channels of one slice.
        l.note = said + " and no slices (a 3D array saved without axes?): read as " +
                 std::to_string(ij_channels) + " slices of one channel";
      } else if (ij_channels > kMaxVolumeChannels) {
        return UnimplementedError(said + " with " + std::to_string(l.pages) + " pages; at most " +
                                  std::to_string(kMaxVolumeChannels) + " channels are supported");
      } else if (l.pages % ij_channels != 0) {
        return DataLossError(said + ", but its " + std::to_string(l.pages) +
                             " pages are not a whole number of slices of that many (truncated file?)");
      } else {
        channels = ij_channels;
        l.channels_as_pages = true;
      }
    }
    if (frames > 1) {
      // A hyperstack's pages are time points of slices of channels (ImageJ's TZC order):
      // they must multiply out to the pages there are.
      const int64_t per_page = l.channels_as_pages ? channels : 1;
      const int64_t slices = std::max<int64_t>(ij_slices, 1);
      const bool bounded = frames <= kMaxVolumeExtent && slices <= kMaxVolumeExtent;
      if (!bounded || slices * frames * per_page != l.pages) {
        return DataLossError("its ImageJ description says frames=" + std::to_string(frames) + ", slices=" +
                             std::to_string(slices) + ", channels=" + std::to_string(per_page) +
                             (bounded ? " (" + std::to_string(frames * slices * per_page) + " pages)" : "") +
                             ", but the file has " + std::to_string(l.pages) + " pages");
      }
      l.frames = frames;
    }
  }
  l.channels = channels;
  l.shape.x = l.width;
  l.shape.y = l.height;
  l.shape.c = channels;
  l.shape.z = l.channels_as_pages ? l.pages / channels : l.pages;
  return l;
}

// Decodes the current page into `dst` (height * width * spp samples).
Status DecodePage(TIFF* tif, const Layout& l, uint8_t* dst, TiffErrors* errors) {
  const size_t elem = DTypeSize(l.dtype);
  const size_t row_bytes = static_cast<size_t>(l.width) * l.spp * elem;
  if (TIFFIsTiled(tif)) {
    uint32_t tw = 0, th = 0;
    if (!TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw) || !TIFFGetField(tif, TIFFTAG_TILELENGTH, &th) ||
        tw == 0 || th == 0 || tw > (1u << 16) || th > (1u << 16)) {
      return DataLossError("TIFF tile size is invalid");
    }
    const size_t tile_row = static_cast<size_t>(tw) * l.spp * elem;
    const tmsize_t tile_bytes = static_cast<tmsize_t>(tile_row * th);
    // The tile size comes from the file: bound it before allocating anything.
    if (tile_bytes > kMaxLibtiffAlloc || static_cast<uint64_t>(TIFFTileSize64(tif)) != static_cast<uint64_t>(tile_bytes)) {
      return DataLossError("TIFF tile size is invalid or too large");
    }
    std::vector<uint8_t> tile(static_cast<size_t>(tile_bytes));
    for (uint32_t y = 0; y < l.height; y += th) {
      for (uint32_t x = 0; x < l.width; x += tw) {
        ttile_t index = TIFFComputeTile(tif, x, y, 0, 0);
        if (TIFFReadEncodedTile(tif, index, tile.data(), tile_bytes) != tile_bytes) {
          return DataLossError(FormatError("cannot decode TIFF tile", *errors));
        }
        uint32_t rows = std::min(th, l.height - y);
        size_t cols_bytes = static_cast<size_t>(std::min(tw, l.width - x)) * l.spp * elem;
        for (uint32_t r = 0; r < rows; ++r) {
          std::memcpy(dst + (y + r) * row_bytes + x * l.spp * elem, tile.data() + r * tile_row,
                      cols_bytes);
        }
      }
    }
    return Status::Ok();
  }
  uint32_t rps = l.height;
  TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rps);
  if (rps == 0 || rps > l.height) rps = l.height;
  uint32_t strips = TIFFNumberOfStrips(tif);
  uint32_t needed = (l.height + rps - 1) / rps;
  if (strips < needed) return DataLossError("TIFF page has too few strips");
  for (uint32_t s = 0; s < needed; ++s) {
    uint32_t rows = std::min(rps, l.height - s * rps);
    tmsize_t want = static_cast<tmsize_t>(rows * row_bytes);
    tmsize_t got = TIFFReadEncodedStrip(tif, s, dst + static_cast<size_t>(s) * rps * row_bytes,
                                        want);
    if (got < want) {
      return DataLossError(FormatError("TIFF strip " + std::to_string(s) +
                                           " is missing or truncated", *errors));
    }
  }
  return Status::Ok();
}

// Decodes slices [z_begin, z_end) into `vol` (already shaped for them). `*page` is the
// directory the handle is on (-1: unknown): reading forward from it costs only the pages
// in between, so consecutive ranges never walk the chain from the start again.
Status ReadSlicesInto(TIFF* tif, const Layout& l, int64_t z_begin, int64_t z_end, Volume* vol,
                      TiffErrors* errors, int64_t* page) {
  const int64_t pages_per_slice = l.channels_as_pages ? l.channels : 1;
  const size_t elem = DTypeSize(l.dtype);
  const size_t page_bytes = static_cast<size_t>(l.width) * l.height * l.spp * elem;
  std::vector<uint8_t> buffer(l.channels_as_pages ? page_bytes : 0);
  const int64_t first = z_begin * pages_per_slice;
  if (first > 0xFFFF'FFFFll) return DataLossError("cannot seek to TIFF page " + std::to_string(first));
  if (*page < 0 || first < *page) {
    if (!TIFFSetDirectory(tif, static_cast<tdir_t>(first))) {
      *page = -1;
      return DataLossError(FormatError("cannot seek to TIFF page " + std::to_string(first), *errors));
    }
    *page = first;
  }
  for (; *page < first; ++*page) {
    if (!TIFFReadDirectory(tif)) {
      *page = -1;
      return DataLossError(FormatError("cannot read TIFF page " + std::to_string(*page + 1), *errors));
    }
  }
  for (int64_t z = 0; z < z_end - z_begin; ++z) {
    for (int64_t c = 0; c < pages_per_slice; ++c) {
      const int64_t index = first + z * pages_per_slice + c;
      if (index != *page) {
        if (!TIFFReadDirectory(tif)) {
          *page = -1;
          return DataLossError(FormatError("cannot read TIFF page " + std::to_string(index), *errors));
        }
        *page = index;
      }
      Layout p;
      IDLEGRID_RETURN_IF_ERROR(PageFields(tif, &p));
      if (p.width != l.width || p.height != l.height || p.bits != l.bits || p.spp != l.spp ||
          p.format != l.format) {
        return InvalidArgumentError(
            "TIFF page " + std::to_string(index) + " is " + std::to_string(p.width) + "x" +
            std::to_string(p.height) + " with " + std::to_string(p.bits) +
            "-bit samples, unlike the first page (" + std::to_string(l.width) + "x" +
            std::to_string(l.height) + ", " + std::to_string(l.bits) + "-bit)");
      }
      if (!l.channels_as_pages) {
        IDLEGRID_RETURN_IF_ERROR(DecodePage(tif, l, vol->slice_bytes_at(z), errors));
        continue;
      }
      IDLEGRID_RETURN_IF_ERROR(DecodePage(tif, l, buffer.data(), errors));
      uint8_t* out = vol->slice_bytes_at(z);
      const size_t stride = static_cast<size_t>(l.channels) * elem;
      for (size_t i = 0, n = static_cast<size_t>(l.width) * l.height; i < n; ++i) {
        std::memcpy(out + i * stride + static_cast<size_t>(c) * elem, buffer.data() + i * elem, elem);
      }
    }
  }
  return Status::Ok();
}

StatusOr<Volume> ReadRange(TIFF* tif, const Layout& l, int64_t z_begin, int64_t z_end,
                           uint64_t max_bytes, TiffErrors* errors, int64_t* page) {
  if (z_end < 0) z_end = l.shape.z;
  if (z_begin < 0 || z_begin >= z_end || z_end > l.shape.z) {
    return OutOfRangeError("slices [" + std::to_string(z_begin) + ", " + std::to_string(z_end) +
                           ") outside a stack of " + std::to_string(l.shape.z));
  }
  VolumeShape shape = l.shape;
  shape.z = z_end - z_begin;
  IDLEGRID_ASSIGN_OR_RETURN(Volume vol, Volume::CreateUninitialized(shape, l.dtype, max_bytes));
  IDLEGRID_RETURN_IF_ERROR(ReadSlicesInto(tif, l, z_begin, z_end, &vol, errors, page));
  return vol;
}

StatusOr<Volume> ReadStack(TIFF* tif, TiffErrors* errors, const TiffReadOptions& options) {
  IDLEGRID_ASSIGN_OR_RETURN(Layout l, ReadLayout(tif, errors));
  int64_t page = 0;  // ReadLayout leaves the handle on the first page
  return ReadRange(tif, l, options.z_begin, options.z_end, options.max_bytes, errors, &page);
}

// Opens a file for reading; `errors` collects libtiff's messages and must outlive the handle.
// "m": read(), never mmap. libtiff maps the whole file by default, and every page a range
// read touches then stays resident in the process (RSS grew with the slab read, and the
// server's with the volumes it cut).
StatusOr<TiffPtr> OpenForRead(const std::string& path, TiffErrors* errors) {
  auto opts = MakeOptions(errors);
  TiffPtr tif(TIFFOpenExt(path.c_str(), "rm", opts.get()));
  if (!tif) {
    if (::access(path.c_str(), R_OK) != 0) return NotFoundError("cannot open " + path);
    return InvalidArgumentError(FormatError(path + " is not a TIFF file", *errors));
  }
  return tif;
}

}  // namespace

StatusOr<TiffInfo> ProbeTiff(const std::string& path) {
  TiffErrors errors;
  IDLEGRID_ASSIGN_OR_RETURN(TiffPtr tif, OpenForRead(path, &errors));
  StatusOr<Layout> l = ReadLayout(tif.get(), &errors);
  if (!l.ok()) return l.status().WithContext(path);
  TiffInfo info;
  info.shape = l->shape;
  info.dtype = l->dtype;
  info.bigtiff = l->bigtiff;
  info.imagej = l->imagej;
  info.note = l->note;
  info.frames = l->frames;
  return info;
}

StatusOr<Volume> ReadTiff(const std::string& path, const TiffReadOptions& options) {
  TiffErrors errors;
  IDLEGRID_ASSIGN_OR_RETURN(TiffPtr tif, OpenForRead(path, &errors));
  StatusOr<Volume> v = ReadStack(tif.get(), &errors, options);
  if (!v.ok()) return v.status().WithContext(path);
  return v;
}

StatusOr<Volume> ReadTiffFromMemory(std::string_view bytes, const TiffReadOptions& options) {
  TiffErrors errors;
  auto opts = MakeOptions(&errors);
  MemSource src{bytes.data(), bytes.size(), 0};
  TiffPtr tif(TIFFClientOpenExt("memory", "rm", &src, MemRead, MemWrite, MemSeek, MemClose,
                                MemSize, MemMap, MemUnmap, opts.get()));
  if (!tif) return InvalidArgumentError(FormatError("not a TIFF file", errors));
  return ReadStack(tif.get(), &errors, options);
}

// Stack reader --------------------------------------------------------------

struct TiffStackReader::State {
  std::string path;
  TiffErrors errors;
  TiffPtr tif;
  Layout layout;
  TiffInfo info;
  uint64_t max_bytes = 0;
  int64_t page = 0;
};

TiffStackReader::TiffStackReader() = default;
TiffStackReader::~TiffStackReader() = default;

StatusOr<std::unique_ptr<TiffStackReader>> TiffStackReader::Open(const std::string& path,
                                                                 uint64_t max_bytes) {
  std::unique_ptr<TiffStackReader> r(new TiffStackReader());
  r->state_ = std::make_unique<State>();
  State& s = *r->state_;
  s.path = path;
  s.max_bytes = max_bytes;
  IDLEGRID_ASSIGN_OR_RETURN(s.tif, OpenForRead(path, &s.errors));
  StatusOr<Layout> l = ReadLayout(s.tif.get(), &s.errors);
  if (!l.ok()) return l.status().WithContext(path);
  s.layout = *l;
  s.info.shape = l->shape;
  s.info.dtype = l->dtype;
  s.info.bigtiff = l->bigtiff;
  s.info.imagej = l->imagej;
  s.info.note = l->note;
  s.info.frames = l->frames;
  return r;
}

const TiffInfo& TiffStackReader::info() const { return state_->info; }

StatusOr<Volume> TiffStackReader::ReadSlices(int64_t z_begin, int64_t z_end) {
  State& s = *state_;
  StatusOr<Volume> v = ReadRange(s.tif.get(), s.layout, z_begin, z_end, s.max_bytes, &s.errors, &s.page);
  if (!v.ok()) return v.status().WithContext(s.path);
  return v;
}

Status CopyTiffSlices(const std::string& src, const SliceRegion& region, const std::string& dst,
                      const TiffWriteOptions& options, int64_t chunk_bytes, const std::atomic<bool>* cancel) {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffStackReader> reader, TiffStackReader::Open(src));
  const TiffInfo& info = reader->info();
  IDLEGRID_RETURN_IF_ERROR(region.Validate());
  if (region.depth != info.shape.z) {
    return InvalidArgumentError(src + " has " + std::to_string(info.shape.z) + " slices, the region " +
                                std::to_string(region.depth));
  }
  VolumeShape shape = info.shape;
  shape.z = region.slices();
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffWriter> writer, TiffWriter::Open(dst, shape, info.dtype, options));
  const int64_t slice_bytes = std::max<int64_t>(1, info.shape.y * info.shape.x * info.shape.c *
                                                       static_cast<int64_t>(DTypeSize(info.dtype)));
  const int64_t step = std::max<int64_t>(1, chunk_bytes / slice_bytes);
  for (const auto& [b, e] : region.runs) {
    for (int64_t z = b; z < e; z += step) {
      if (cancel != nullptr && cancel->load()) return CancelledError("the copy of " + src + " was stopped");
      IDLEGRID_ASSIGN_OR_RETURN(Volume chunk, reader->ReadSlices(z, std::min(e, z + step)));
      IDLEGRID_RETURN_IF_ERROR(writer->Append(chunk));
    }
  }
  return writer->Close();
}

Status PlaceInSeries(const std::string& src, int64_t frames, int64_t time_point, const std::string& dst) {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffStackReader> reader, TiffStackReader::Open(src));
  const TiffInfo& info = reader->info();
  if (info.frames > 1) {
    return InvalidArgumentError(src + " is already a series of " + std::to_string(info.frames) + " time points");
  }
  if (frames < 1 || time_point < 0 || time_point >= frames) {
    return InvalidArgumentError("time point " + std::to_string(time_point + 1) + " is outside the series' " +
                                std::to_string(frames) + " (for " + src + ")");
  }
  VolumeShape shape = info.shape;
  shape.z *= frames;
  TiffWriteOptions options;
  options.deflate = true;
  options.frames = frames;
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffWriter> writer, TiffWriter::Open(dst, shape, info.dtype, options));
  VolumeShape one = info.shape;
  one.z = 1;
  IDLEGRID_ASSIGN_OR_RETURN(const Volume empty, Volume::Create(one, info.dtype));
  for (int64_t t = 0; t < frames; ++t) {
    for (int64_t z = 0; z < info.shape.z; ++z) {
      if (t != time_point) {
        IDLEGRID_RETURN_IF_ERROR(writer->Append(empty));
        continue;
      }
      IDLEGRID_ASSIGN_OR_RETURN(Volume slice, reader->ReadSlices(z, z + 1));
      IDLEGRID_RETURN_IF_ERROR(writer->Append(slice));
    }
  }
  return writer->Close();
}

// Writer -------------------------------------------------------------------

struct TiffWriter::State {
  std::string path, part_path;
  VolumeShape shape;
  DType dtype = DType::kUInt8;
  TiffWriteOptions options;
  TiffErrors errors;
  std::unique_ptr<TIFFOpenOptions, OptionsDeleter> open_options;
  TiffPtr tif;
  int64_t slices_written = 0;
  std::vector<uint8_t> page;  // one channel of one slice
};

StatusOr<std::unique_ptr<TiffWriter>> TiffWriter::Open(const std::string& path,
                                                      VolumeShape shape, DType dtype,
                                                      const TiffWriteOptions& options) {
  if (shape.z < 1 || shape.y < 1 || shape.x < 1 || shape.c < 1 || shape.z > kMaxVolumeExtent ||
      shape.y > kMaxVolumeExtent || shape.x > kMaxVolumeExtent || shape.c > kMaxVolumeChannels) {
    return InvalidArgumentError("invalid volume shape " + shape.ToString());
  }
  if (options.frames < 1 || shape.z % options.frames != 0) {
    return InvalidArgumentError(std::to_string(shape.z) + " slices are not " + std::to_string(options.frames) +
                                " time points of equal depth");
  }
  std::unique_ptr<TiffWriter> w(new TiffWriter());
  w->state_ = std::make_unique<State>();
  State& s = *w->state_;
  s.path = path;
  s.part_path = path + ".part";
  s.shape = shape;
  s.dtype = dtype;
  s.options = options;
  uint64_t data_bytes = static_cast<uint64_t>(shape.elements()) * DTypeSize(dtype);
  w->bigtiff_ = data_bytes > options.bigtiff_threshold_bytes;
  s.open_options = MakeOptions(&s.errors);
  s.tif.reset(TIFFOpenExt(s.part_path.c_str(), w->bigtiff_ ? "w8" : "w", s.open_options.get()));
  if (!s.tif) return IoError(FormatError("cannot create " + s.part_path, s.errors));
  s.page.resize(static_cast<size_t>(shape.y * shape.x) * DTypeSize(dtype));
  return w;
}

TiffWriter::~TiffWriter() {
  if (state_ && state_->tif) {
    state_->tif.reset();
    ::unlink(state_->part_path.c_str());
  }
}

Status TiffWriter::Append(const Volume& chunk) {
  State& s = *state_;
  if (!s.tif) return FailedPreconditionError("TIFF writer is closed");
  const VolumeShape& cs = chunk.shape();
  if (cs.y != s.shape.y || cs.x != s.shape.x || cs.c != s.shape.c || chunk.dtype() != s.dtype) {
    return InvalidArgumentError("chunk " + cs.ToString() + " " + DTypeName(chunk.dtype()) +
                                " does not match the stack " + s.shape.ToString() + " " +
                                DTypeName(s.dtype));
  }
  if (s.slices_written + cs.z > s.shape.z) {
    return OutOfRangeError("more slices appended than the stack's depth " +
                           std::to_string(s.shape.z));
  }
  const uint16_t bits = static_cast<uint16_t>(8 * DTypeSize(s.dtype));
  const uint16_t format = s.dtype == DType::kFloat32 ? SAMPLEFORMAT_IEEEFP : SAMPLEFORMAT_UINT;
  const size_t elem = DTypeSize(s.dtype);
  const size_t pixels = static_cast<size_t>(s.shape.y * s.shape.x);
  std::string description;
  if (s.slices_written == 0) {
    description = "ImageJ=1.54f\nimages=" + std::to_string(s.shape.z * s.shape.c) + "\n";
    if (s.shape.c > 1) description += "channels=" + std::to_string(s.shape.c) + "\n";
    const int64_t frames = s.options.frames;
    if (s.shape.z / frames > 1) description += "slices=" + std::to_string(s.shape.z / frames) + "\n";
    if (frames > 1) description += "frames=" + std::to_string(frames) + "\n";
    if (s.shape.c > 1 || frames > 1) description += "hyperstack=true\nmode=grayscale\n";
    if (s.options.spacing_z > 0) description += "spacing=" + std::to_string(s.options.spacing_z) + "\n";
    description += "loop=false\n";
  }
  TIFF* tif = s.tif.get();
  for (int64_t z = 0; z < cs.z; ++z) {
    const uint8_t* slice = chunk.slice_bytes_at(z);
    for (int64_t c = 0; c < s.shape.c; ++c) {
      const uint8_t* src = slice;
      if (s.shape.c > 1) {
        const size_t stride = static_cast<size_t>(s.shape.c) * elem;
        for (size_t i = 0; i < pixels; ++i) {
          std::memcpy(s.page.data() + i * elem, slice + i * stride + c * elem, elem);
        }
        src = s.page.data();
      }
      bool ok = TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, static_cast<uint32_t>(s.shape.x)) &&
                TIFFSetField(tif, TIFFTAG_IMAGELENGTH, static_cast<uint32_t>(s.shape.y)) &&
                TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, bits) &&
                TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, uint16_t{1}) &&
                TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, format) &&
                TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK) &&
                TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG) &&
                TIFFSetField(tif, TIFFTAG_COMPRESSION, s.options.deflate ? COMPRESSION_ADOBE_DEFLATE : COMPRESSION_NONE) &&
                (!s.options.deflate || TIFFSetField(tif, TIFFTAG_ZIPQUALITY, 1)) &&
                TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, static_cast<uint32_t>(s.shape.y));
      if (ok && !description.empty()) {
        ok = TIFFSetField(tif, TIFFTAG_IMAGEDESCRIPTION, description.c_str());
        description.clear();
      }
      tmsize_t bytes = static_cast<tmsize_t>(pixels * elem);
      ok = ok && TIFFWriteEncodedStrip(tif, 0, const_cast<uint8_t*>(src), bytes) == bytes &&
           TIFFWriteDirectory(tif);
      if (!ok) return IoError(FormatError("cannot write " + s.part_path, s.errors));
    }
    ++s.slices_written;
  }
  return Status::Ok();
}

Status TiffWriter::Close() {
  State& s = *state_;
  if (!s.tif) return FailedPreconditionError("TIFF writer is closed");
  if (s.slices_written != s.shape.z) {
    return FailedPreconditionError("only " + std::to_string(s.slices_written) + " of " +
                                   std::to_string(s.shape.z) + " slices were written");
  }
  TIFFClose(s.tif.release());
  if (!s.errors.text.empty()) {
    ::unlink(s.part_path.c_str());
    return IoError(FormatError("cannot write " + s.part_path, s.errors));
  }
  int fd = ::open(s.part_path.c_str(), O_RDONLY | O_CLOEXEC);
  bool synced = fd >= 0 && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!synced || ::rename(s.part_path.c_str(), s.path.c_str()) != 0) {
    Status st = ErrnoError("cannot finish " + s.path, errno);
    ::unlink(s.part_path.c_str());
    return st;
  }
  std::filesystem::path parent = std::filesystem::path(s.path).parent_path();
  return FsyncDir(parent.empty() ? "." : parent.string());
}

Status WriteTiff(const std::string& path, const Volume& volume, const TiffWriteOptions& options) {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffWriter> w,
                            TiffWriter::Open(path, volume.shape(), volume.dtype(), options));
  IDLEGRID_RETURN_IF_ERROR(w->Append(volume));
  return w->Close();
}

}  // namespace idlegrid
