#include "idlegrid/shared/hdf5_io.h"

#include <hdf5.h>
#include <hdf5_hl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <vector>

#include "idlegrid/shared/json.h"
#include "idlegrid/shared/tiff_io.h"

namespace idlegrid {
namespace {

// Debian's libhdf5 is the serial build: not thread-safe. One lock for every call into it.
std::mutex& Hdf5Mutex() {
  static std::mutex mu;
  return mu;
}

constexpr int kMaxRank = 5;
constexpr size_t kMaxAttributeBytes = 64 << 10;
constexpr size_t kChunkCacheBytes = size_t{64} << 20;
constexpr int64_t kConvertBytes = int64_t{64} << 20;  // slices moved at a time when converting

// Silences libhdf5's printing of its error stack once; errors are collected instead.
void QuietErrors() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

herr_t CollectError(unsigned n, const H5E_error2_t* e, void* out) {
  auto* text = static_cast<std::string*>(out);
  if (n < 3 && e != nullptr && e->desc != nullptr && e->desc[0] != '\0') {
    if (!text->empty()) *text += "; ";
    *text += e->desc;
  }
  return 0;
}

// libhdf5's error stack since the last call, as text (and cleared).
std::string TakeErrors() {
  std::string text;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, CollectError, &text);
  H5Eclear2(H5E_DEFAULT);
  return text;
}

Status Hdf5Error(StatusCode code, const std::string& what) {
  const std::string detail = TakeErrors();
  return Status(code, detail.empty() ? what : what + " (" + detail + ")");
}

// An HDF5 identifier closed with its own close function.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      Reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = -1;
    }
    return *this;
  }
  ~Handle() { Reset(); }
  void Reset() {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
    id_ = -1;
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

bool HasHdf5Suffix(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* s : {".h5", ".hdf5", ".hdf", ".he5", ".nxs"}) {
    const size_t n = std::strlen(s);
    if (lower.size() > n && lower.compare(lower.size() - n, n, s) == 0) return true;
  }
  return false;
}

// A string attribute of `obj` (fixed or variable length), at most kMaxAttributeBytes.
std::string StringAttribute(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return "";
  Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  if (!attr.ok()) return "";
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (!type.ok() || H5Tget_class(type.get()) != H5T_STRING) return "";
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  if (!space.ok() || H5Sget_simple_extent_npoints(space.get()) != 1) return "";
  Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_cset(mem.get(), H5Tget_cset(type.get()));  // libhdf5 does not convert ASCII <-> UTF-8
  if (H5Tis_variable_str(type.get()) > 0) {
    H5Tset_size(mem.get(), H5T_VARIABLE);
    char* value = nullptr;
    if (H5Aread(attr.get(), mem.get(), &value) < 0 || value == nullptr) return "";
    std::string out(value, strnlen(value, kMaxAttributeBytes));
    H5free_memory(value);
    return out;
  }
  const size_t size = H5Tget_size(type.get());
  if (size == 0 || size > kMaxAttributeBytes) return "";
  H5Tset_size(mem.get(), size + 1);
  std::string buf(size + 1, '\0');
  if (H5Aread(attr.get(), mem.get(), buf.data()) < 0) return "";
  return std::string(buf.c_str());
}

// The dataset's axes, upper case, from its attributes; empty when it has none.
std::string AxesAttribute(hid_t ds) {
  const std::string tags = StringAttribute(ds, "axistags");
  if (!tags.empty()) {
    StatusOr<Json> j = ParseJson(tags);
    if (j.ok() && j->is_object() && j->contains("axes") && (*j)["axes"].is_array()) {
      std::string axes;
      for (const Json& a : (*j)["axes"]) {
        if (!a.is_object() || !a.contains("key") || !a["key"].is_string() || a["key"].get<std::string>().size() != 1) return "?";
        axes += static_cast<char>(std::toupper(static_cast<unsigned char>(a["key"].get<std::string>()[0])));
      }
      return axes;
    }
    return "?";
  }
  std::string axes = StringAttribute(ds, "axes");
  std::transform(axes.begin(), axes.end(), axes.begin(), [](unsigned char c) { return std::toupper(c); });
  return axes;
}

// Which of T, Z, Y, X, C each dimension is.
struct Axes {
  std::string names;  // one letter per dimension
  int Index(char a) const {
    const size_t i = names.find(a);
    return i == std::string::npos ? -1 : static_cast<int>(i);
  }
};

StatusOr<Axes> ResolveAxes(const std::string& attr, const std::vector<hsize_t>& dims, std::string* note) {
  const int rank = static_cast<int>(dims.size());
  Axes a;
  if (!attr.empty()) {
    a.names = attr;
    bool ordered = static_cast<int>(attr.size()) == rank;
    size_t last = 0;  // one past the previous axis' place in TZYXC
    for (char c : attr) {
      const size_t at = std::string("TZYXC").find(c);
      if (at == std::string::npos || at + 1 <= last) ordered = false;
      if (at != std::string::npos) last = at + 1;
    }
    if (!ordered || a.Index('Y') < 0 || a.Index('X') < 0) {
      return UnimplementedError("its axes are \"" + attr + "\"; idlegrid reads T, Z, Y, X, C in that order (Y and X " +
                                "required, others optional): transpose the dataset, e.g. in ilastik's export settings");
    }
    return a;
  }
  switch (rank) {
    case 2: a.names = "YX"; break;
    case 3: a.names = "ZYX"; break;
    case 4:
      if (dims[3] <= 4) {
        a.names = "ZYXC";
        *note = "4D without axes, last extent " + std::to_string(dims[3]) + ": read as Z, Y, X and " +
                std::to_string(dims[3]) + " channels (give it an \"axes\" attribute such as \"TZYX\" to say otherwise)";
      } else {
        a.names = "TZYX";
        *note = "4D without axes: read as " + std::to_string(dims[0]) + " time points of Z, Y, X";
      }
      break;
    case 5: a.names = "TZYXC"; break;
    default:
      return UnimplementedError("it has " + std::to_string(rank) + " dimensions; idlegrid reads 2 to 5");
  }
  return a;
}

// Reads the layout of an open dataset into `info` (shape, type, axes, chunking).
struct Layout {
  Hdf5Info info;
  Axes axes;
  std::vector<hsize_t> dims;
  hid_t mem_type = -1;  // native type to read into
};

StatusOr<Layout> ReadLayout(hid_t ds) {
  Layout l;
  Handle type(H5Dget_type(ds), H5Tclose);
  Handle space(H5Dget_space(ds), H5Sclose);
  if (!type.ok() || !space.ok()) return Hdf5Error(StatusCode::kDataLoss, "cannot read its type and extent");
  const H5T_class_t cls = H5Tget_class(type.get());
  const size_t size = H5Tget_size(type.get());
  std::string converted;
  if (cls == H5T_INTEGER && H5Tget_sign(type.get()) == H5T_SGN_NONE && size == 1) {
    l.info.dtype = DType::kUInt8;
  } else if (cls == H5T_INTEGER && H5Tget_sign(type.get()) == H5T_SGN_NONE && size == 2) {
    l.info.dtype = DType::kUInt16;
  } else if (cls == H5T_FLOAT && size == 4) {
    l.info.dtype = DType::kFloat32;
  } else if ((cls == H5T_INTEGER && size <= 8) || (cls == H5T_FLOAT && size == 8)) {
    l.info.dtype = DType::kFloat32;
    converted = std::string(cls == H5T_FLOAT ? "float" : H5Tget_sign(type.get()) == H5T_SGN_NONE ? "uint" : "int") +
                std::to_string(8 * size) + " samples read as float32";
  } else {
    const char* what = cls == H5T_STRING ? "strings" : cls == H5T_COMPOUND ? "records (compound type)"
                       : cls == H5T_ENUM ? "enumerations" : cls == H5T_FLOAT ? "floats of an unusual size" : "no numbers";
    return InvalidArgumentError(std::string("it holds ") + what + ", not image samples");
  }
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 2 || rank > kMaxRank) {
    return UnimplementedError("it has " + std::to_string(rank) + " dimensions; idlegrid reads 2 to 5");
  }
  l.dims.resize(static_cast<size_t>(rank));
  if (H5Sget_simple_extent_dims(space.get(), l.dims.data(), nullptr) != rank) {
    return Hdf5Error(StatusCode::kDataLoss, "cannot read its extent");
  }
  l.mem_type = l.info.dtype == DType::kUInt8 ? H5T_NATIVE_UINT8 : l.info.dtype == DType::kUInt16 ? H5T_NATIVE_UINT16 : H5T_NATIVE_FLOAT;
  IDLEGRID_ASSIGN_OR_RETURN(l.axes, ResolveAxes(AxesAttribute(ds), l.dims, &l.info.note));
  if (!converted.empty()) l.info.note += (l.info.note.empty() ? "" : "; ") + converted;
  auto extent = [&](char a) -> int64_t { return l.axes.Index(a) < 0 ? 1 : static_cast<int64_t>(l.dims[static_cast<size_t>(l.axes.Index(a))]); };
  const int64_t t = extent('T'), z = extent('Z');
  l.info.shape = VolumeShape{t * z, extent('Y'), extent('X'), extent('C')};
  l.info.frames = t;
  for (char a : std::string("TZYX")) {
    if (extent(a) < 1 || extent(a) > kMaxVolumeExtent) return InvalidArgumentError(std::string("its ") + a + " extent is out of range");
  }
  if (t * z > kMaxVolumeExtent) return InvalidArgumentError("it has more slices than idlegrid reads");
  if (extent('C') > kMaxVolumeChannels) {
    return UnimplementedError("it has " + std::to_string(extent('C')) + " channels; at most " + std::to_string(kMaxVolumeChannels));
  }
  l.info.axes = l.axes.names;
  Handle plist(H5Dget_create_plist(ds), H5Pclose);
  if (plist.ok() && H5Pget_layout(plist.get()) == H5D_CHUNKED && l.axes.Index('Z') >= 0) {
    std::vector<hsize_t> chunk(static_cast<size_t>(rank));
    if (H5Pget_chunk(plist.get(), rank, chunk.data()) == rank) {
      l.info.chunk_slices = std::clamp<int64_t>(static_cast<int64_t>(chunk[static_cast<size_t>(l.axes.Index('Z'))]), 1, z);
    }
  }
  H5Eclear2(H5E_DEFAULT);
  return l;
}

// Datasets of two or more dimensions anywhere in the file, for "which one?" messages.
herr_t ListDataset(hid_t group, const char* name, const H5L_info_t*, void* out) {
  Handle obj(H5Oopen(group, name, H5P_DEFAULT), H5Oclose);
  if (obj.ok() && H5Iget_type(obj.get()) == H5I_DATASET) {
    Handle space(H5Dget_space(obj.get()), H5Sclose);
    if (space.ok() && H5Sget_simple_extent_ndims(space.get()) >= 2) {
      auto* list = static_cast<std::vector<std::string>*>(out);
      if (list->size() < 64) list->push_back(std::string("/") + name);
    }
  }
  return 0;
}

// Opens the named dataset (or the file's only image dataset) of an open file.
StatusOr<Handle> OpenDataset(hid_t file, const std::string& name, std::string* chosen) {
  std::string path = name;
  if (path.empty()) {
    std::vector<std::string> list;
    H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, ListDataset, &list);
    H5Eclear2(H5E_DEFAULT);
    if (list.size() != 1) {
      std::string names;
      for (size_t i = 0; i < list.size() && i < 8; ++i) names += (i ? ", " : "") + list[i];
      return InvalidArgumentError(list.empty() ? "it holds no dataset of two or more dimensions"
                                               : "name a dataset, e.g. file.h5:" + list[0] + " (it holds " + names + ")");
    }
    path = list[0];
  }
  if (path.empty() || path[0] != '/' || path.size() > 4096) return InvalidArgumentError("dataset \"" + path + "\" must be an absolute path");
  // Every link on the way must exist (H5Oopen on a missing one only says "not found").
  for (size_t at = path.find('/', 1); ; at = path.find('/', at + 1)) {
    const std::string prefix = at == std::string::npos ? path : path.substr(0, at);
    if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return NotFoundError("dataset " + path + " does not exist (no " + prefix + ")");
    }
    if (at == std::string::npos) break;
  }
  Handle obj(H5Oopen(file, path.c_str(), H5P_DEFAULT), H5Oclose);
  if (!obj.ok()) return Hdf5Error(StatusCode::kDataLoss, "cannot open " + path);
  if (H5Iget_type(obj.get()) != H5I_DATASET) return InvalidArgumentError(path + " is a group, not a dataset");
  obj.Reset();
  Handle access(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  H5Pset_chunk_cache(access.get(), 12421, kChunkCacheBytes, 1.0);
  Handle ds(H5Dopen2(file, path.c_str(), access.get()), H5Dclose);
  if (!ds.ok()) return Hdf5Error(StatusCode::kDataLoss, "cannot open " + path);
  *chosen = path;
  return ds;
}

}  // namespace

VolumePath ParseVolumePath(const std::string& spec) {
  VolumePath p;
  for (size_t at = spec.find(":/"); at != std::string::npos; at = spec.find(":/", at + 1)) {
    if (HasHdf5Suffix(spec.substr(0, at))) {
      p.file = spec.substr(0, at);
      p.dataset = spec.substr(at + 1);
      p.hdf5 = true;
      return p;
    }
  }
  p.file = spec;
  p.hdf5 = HasHdf5Suffix(spec);
  return p;
}

struct Hdf5Reader::State {
  std::string name;  // file:dataset, for errors
  Handle file, ds;
  Layout layout;
  uint64_t max_bytes = 0;

  // Opens the dataset of the open file and reads its layout; errors name the file.
  Status Finish(const std::string& dataset) {
    std::string chosen;
    StatusOr<Handle> opened = OpenDataset(file.get(), dataset, &chosen);
    if (!opened.ok()) return opened.status().WithContext(name);
    ds = std::move(*opened);
    name += ":" + chosen;
    StatusOr<Layout> l = ReadLayout(ds.get());
    if (!l.ok()) return l.status().WithContext(name);
    layout = std::move(*l);
    layout.info.dataset = chosen;
    return Status::Ok();
  }
};

Hdf5Reader::Hdf5Reader() = default;
Hdf5Reader::~Hdf5Reader() {
  std::lock_guard<std::mutex> lock(Hdf5Mutex());
  state_.reset();
}

StatusOr<std::unique_ptr<Hdf5Reader>> Hdf5Reader::Open(const VolumePath& path, uint64_t max_bytes) {
  std::unique_ptr<Hdf5Reader> r;  // before the lock: its destructor, on errors, takes it too
  std::lock_guard<std::mutex> lock(Hdf5Mutex());
  QuietErrors();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path.file, ec)) return NotFoundError(path.file + ": no such file");
  if (H5Fis_hdf5(path.file.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return InvalidArgumentError(path.file + " is not an HDF5 file");
  }
  r.reset(new Hdf5Reader());
  r->state_ = std::make_unique<State>();
  r->state_->name = path.file;
  r->state_->max_bytes = max_bytes;
  r->state_->file = Handle(H5Fopen(path.file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!r->state_->file.ok()) return Hdf5Error(StatusCode::kDataLoss, path.file + ": cannot open it as HDF5");
  IDLEGRID_RETURN_IF_ERROR(r->state_->Finish(path.dataset));
  return r;
}

StatusOr<std::unique_ptr<Hdf5Reader>> Hdf5Reader::OpenMemory(std::string_view bytes, const std::string& dataset,
                                                             uint64_t max_bytes) {
  std::unique_ptr<Hdf5Reader> r(new Hdf5Reader());  // before the lock, as in Open
  std::lock_guard<std::mutex> lock(Hdf5Mutex());
  QuietErrors();
  r->state_ = std::make_unique<State>();
  r->state_->name = "HDF5 image";
  r->state_->max_bytes = max_bytes;
  if (bytes.size() < 8 || bytes.size() > (size_t{1} << 31)) return InvalidArgumentError("not an HDF5 file");
  std::string copy(bytes);  // libhdf5 copies the image too (flags 0); it wants a mutable pointer
  r->state_->file = Handle(H5LTopen_file_image(copy.data(), copy.size(), 0), H5Fclose);
  if (!r->state_->file.ok()) return Hdf5Error(StatusCode::kInvalidArgument, "not an HDF5 file");
  IDLEGRID_RETURN_IF_ERROR(r->state_->Finish(dataset));
  return r;
}

const Hdf5Info& Hdf5Reader::info() const { return state_->layout.info; }

StatusOr<Volume> Hdf5Reader::ReadSlices(int64_t z_begin, int64_t z_end) {
  std::lock_guard<std::mutex> lock(Hdf5Mutex());
  State& s = *state_;
  const Hdf5Info& info = s.layout.info;
  if (z_end < 0) z_end = info.shape.z;
  if (z_begin < 0 || z_begin >= z_end || z_end > info.shape.z) {
    return OutOfRangeError(s.name + ": slices [" + std::to_string(z_begin) + ", " + std::to_string(z_end) +
                           ") are outside its " + std::to_string(info.shape.z));
  }
  VolumeShape shape = info.shape;
  shape.z = z_end - z_begin;
  IDLEGRID_ASSIGN_OR_RETURN(Volume v, Volume::CreateUninitialized(shape, info.dtype, s.max_bytes));
  const Axes& axes = s.layout.axes;
  const int rank = static_cast<int>(s.layout.dims.size());
  const int64_t depth = info.shape.z / info.frames;
  Handle file_space(H5Dget_space(s.ds.get()), H5Sclose);
  for (int64_t g = z_begin; g < z_end;) {  // one time point's part at a time
    const int64_t t = g / depth, z = g % depth, n = std::min(z_end - g, depth - z);
    std::vector<hsize_t> start(static_cast<size_t>(rank), 0), count = s.layout.dims;
    if (axes.Index('T') >= 0) start[static_cast<size_t>(axes.Index('T'))] = static_cast<hsize_t>(t), count[static_cast<size_t>(axes.Index('T'))] = 1;
    if (axes.Index('Z') >= 0) start[static_cast<size_t>(axes.Index('Z'))] = static_cast<hsize_t>(z), count[static_cast<size_t>(axes.Index('Z'))] = static_cast<hsize_t>(n);
    const hsize_t mem_dims[1] = {static_cast<hsize_t>(n * shape.y * shape.x * shape.c)};
    Handle mem_space(H5Screate_simple(1, mem_dims, nullptr), H5Sclose);
    if (H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0 ||
        H5Dread(s.ds.get(), s.layout.mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, v.slice_bytes_at(g - z_begin)) < 0) {
      return Hdf5Error(StatusCode::kDataLoss, s.name + ": cannot read slices " + std::to_string(g) + " to " + std::to_string(g + n - 1));
    }
    g += n;
  }
  return v;
}

StatusOr<Hdf5Info> ProbeHdf5(const VolumePath& path) {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<Hdf5Reader> r, Hdf5Reader::Open(path, 0));
  return r->info();
}

StatusOr<std::vector<std::string>> ListHdf5Datasets(const std::string& file) {
  std::lock_guard<std::mutex> lock(Hdf5Mutex());
  QuietErrors();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return NotFoundError(file + ": no such file");
  if (H5Fis_hdf5(file.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return InvalidArgumentError(file + " is not an HDF5 file");
  }
  Handle f(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!f.ok()) return Hdf5Error(StatusCode::kDataLoss, file + ": cannot open it as HDF5");
  std::vector<std::string> list;
  H5Lvisit(f.get(), H5_INDEX_NAME, H5_ITER_INC, ListDataset, &list);
  H5Eclear2(H5E_DEFAULT);
  return list;
}

// Writer -------------------------------------------------------------------

struct Hdf5Writer::State {
  VolumePath path;
  std::string part;
  VolumeShape shape;
  DType dtype = DType::kUInt8;
  Hdf5WriteOptions options;
  Handle file, ds;
  int64_t written = 0;
  std::string axes;
};

Hdf5Writer::Hdf5Writer() = default;
Hdf5Writer::~Hdf5Writer() {
  std::lock_guard<std::mutex> lock(Hdf5Mutex());
  if (state_ && state_->file.ok()) {
    state_->ds.Reset();
    state_->file.Reset();
    ::unlink(state_->part.c_str());
  }
  state_.reset();
}

namespace {
// A variable-length UTF-8 string attribute (what h5py writes for str, and ilastik reads).
Status WriteStringAttribute(hid_t obj, const char* name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  const char* text = value.c_str();
  if (!attr.ok() || H5Awrite(attr.get(), type.get(), &text) < 0) {
    return Hdf5Error(StatusCode::kInternal, std::string("cannot write attribute ") + name);
  }
  return Status::Ok();
}

// ilastik's axistags for `axes` (its type flags: channels 1, space 2, time 8).
std::string AxisTags(const std::string& axes) {
  Json list = Json::array();
  for (char a : axes) {
    const int flags = a == 'C' ? 1 : a == 'T' ? 8 : 2;
    list.push_back({{"key", std::string(1, static_cast<char>(std::tolower(a)))}, {"typeFlags", flags},
                    {"resolution", 0}, {"description", ""}});
  }
  return Json{{"axes", list}}.dump();
}
}  // namespace

StatusOr<std::unique_ptr<Hdf5Writer>> Hdf5Writer::Open(const VolumePath& path, VolumeShape shape, DType dtype,
                                                       const Hdf5WriteOptions& options) {
  if (path.dataset.empty() || path.dataset[0] != '/') {
    return InvalidArgumentError("name the dataset to write: " + path.file + ":/path/to/dataset");
  }
  if (shape.z < 1 || shape.y < 1 || shape.x < 1 || shape.c < 1 || options.frames < 1 || shape.z % options.frames != 0) {
    return InvalidArgumentError("cannot write a volume of " + shape.ToString() + " as " + std::to_string(options.frames) +
                                " time points");
  }
  std::unique_ptr<Hdf5Writer> w(new Hdf5Writer());  // before the lock, as in Hdf5Reader::Open
  std::lock_guard<std::mutex> lock(Hdf5Mutex());
  QuietErrors();
  w->state_ = std::make_unique<State>();
  State& s = *w->state_;
  s.path = path;
  s.part = path.file + ".part";
  s.shape = shape;
  s.dtype = dtype;
  s.options = options;
  s.file = Handle(H5Fcreate(s.part.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!s.file.ok()) return Hdf5Error(StatusCode::kInternal, "cannot create " + s.part);
  const int64_t t = options.frames, z = shape.z / options.frames;
  std::vector<hsize_t> dims, chunk;
  s.axes = std::string(t > 1 ? "T" : "") + (z > 1 || t == 1 ? "Z" : "") + "YX" + (shape.c > 1 ? "C" : "");
  for (char a : s.axes) {
    const int64_t n = a == 'T' ? t : a == 'Z' ? z : a == 'Y' ? shape.y : a == 'X' ? shape.x : shape.c;
    dims.push_back(static_cast<hsize_t>(n));
    // One slice per chunk (appended slice by slice; what slice viewers read), tiles in-plane.
    chunk.push_back(static_cast<hsize_t>(a == 'Y' || a == 'X' ? std::min<int64_t>(n, 256) : a == 'C' ? n : 1));
  }
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle create(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(create.get(), static_cast<int>(chunk.size()), chunk.data());
  if (options.deflate && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
    H5Pset_shuffle(create.get());
    H5Pset_deflate(create.get(), 1);
  }
  Handle links(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(links.get(), 1);
  const hid_t type = dtype == DType::kUInt8 ? H5T_NATIVE_UINT8 : dtype == DType::kUInt16 ? H5T_NATIVE_UINT16 : H5T_NATIVE_FLOAT;
  s.ds = Handle(H5Dcreate2(s.file.get(), path.dataset.c_str(), type, space.get(), links.get(), create.get(), H5P_DEFAULT), H5Dclose);
  if (!s.ds.ok()) return Hdf5Error(StatusCode::kInvalidArgument, "cannot create dataset " + path.dataset + " in " + path.file);
  IDLEGRID_RETURN_IF_ERROR(WriteStringAttribute(s.ds.get(), "axes", s.axes));
  IDLEGRID_RETURN_IF_ERROR(WriteStringAttribute(s.ds.get(), "axistags", AxisTags(s.axes)));
  return w;
}

Status Hdf5Writer::Append(const Volume& chunk) {
  std::lock_guard<std::mutex> lock(Hdf5Mutex());
  State& s = *state_;
  if (!s.ds.ok()) return FailedPreconditionError("the HDF5 writer is closed");
  const VolumeShape& cs = chunk.shape();
  if (cs.y != s.shape.y || cs.x != s.shape.x || cs.c != s.shape.c || chunk.dtype() != s.dtype || s.written + cs.z > s.shape.z) {
    return InvalidArgumentError("slices " + cs.ToString() + " do not fit the dataset " + s.shape.ToString());
  }
  const hid_t type = s.dtype == DType::kUInt8 ? H5T_NATIVE_UINT8 : s.dtype == DType::kUInt16 ? H5T_NATIVE_UINT16 : H5T_NATIVE_FLOAT;
  const int64_t depth = s.shape.z / s.options.frames;
  Handle file_space(H5Dget_space(s.ds.get()), H5Sclose);
  for (int64_t i = 0; i < cs.z;) {
    const int64_t g = s.written + i, t = g / depth, z = g % depth, n = std::min(cs.z - i, depth - z);
    std::vector<hsize_t> start, count;
    for (char a : s.axes) {
      start.push_back(static_cast<hsize_t>(a == 'T' ? t : a == 'Z' ? z : 0));
      count.push_back(static_cast<hsize_t>(a == 'T' ? 1 : a == 'Z' ? n : a == 'Y' ? s.shape.y : a == 'X' ? s.shape.x : s.shape.c));
    }
    const hsize_t mem_dims[1] = {static_cast<hsize_t>(n * cs.y * cs.x * cs.c)};
    Handle mem_space(H5Screate_simple(1, mem_dims, nullptr), H5Sclose);
    if (H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0 ||
        H5Dwrite(s.ds.get(), type, mem_space.get(), file_space.get(), H5P_DEFAULT, chunk.slice_bytes_at(i)) < 0) {
      return Hdf5Error(StatusCode::kInternal, "cannot write " + s.part);
    }
    i += n;
  }
  s.written += cs.z;
  return Status::Ok();
}

Status Hdf5Writer::Close() {
  std::lock_guard<std::mutex> lock(Hdf5Mutex());
  State& s = *state_;
  if (!s.ds.ok()) return FailedPreconditionError("the HDF5 writer is closed");
  if (s.written != s.shape.z) {
    return FailedPreconditionError("only " + std::to_string(s.written) + " of " + std::to_string(s.shape.z) + " slices were written");
  }
  s.ds.Reset();
  if (H5Fclose(s.file.get()) < 0) {
    s.file = Handle();
    ::unlink(s.part.c_str());
    return Hdf5Error(StatusCode::kInternal, "cannot finish " + s.part);
  }
  s.file = Handle();  // closed above
  if (std::rename(s.part.c_str(), s.path.file.c_str()) != 0) {
    Status st = ErrnoError("cannot finish " + s.path.file, errno);
    ::unlink(s.part.c_str());
    return st;
  }
  return Status::Ok();
}

// Conversions --------------------------------------------------------------

namespace {
// Copies `total` slices from `reader` to `writer`, `step` at a time (bounded memory).
template <typename Reader, typename Writer>
Status CopySlices(Reader& reader, Writer& writer, int64_t total, int64_t step, const SliceProgress& progress,
                  const std::atomic<bool>* cancel, const std::string& what) {
  for (int64_t z = 0; z < total; z += step) {
    if (cancel != nullptr && cancel->load()) return CancelledError("the conversion of " + what + " was stopped");
    IDLEGRID_ASSIGN_OR_RETURN(Volume part, reader.ReadSlices(z, std::min(total, z + step)));
    IDLEGRID_RETURN_IF_ERROR(writer.Append(part));
    if (progress) progress(std::min(total, z + step), total);
  }
  return writer.Close();
}

// Slices of `shape` and `dtype` in about kConvertBytes, a multiple of `multiple`.
int64_t ConvertStep(const VolumeShape& shape, DType dtype, int64_t multiple) {
  const int64_t slice = std::max<int64_t>(1, shape.y * shape.x * shape.c * static_cast<int64_t>(DTypeSize(dtype)));
  return std::max<int64_t>(1, kConvertBytes / slice / multiple) * multiple;
}
}  // namespace

Status ConvertHdf5ToTiff(const VolumePath& src, const std::string& tiff_path, const SliceProgress& progress,
                         const std::atomic<bool>* cancel) {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<Hdf5Reader> reader, Hdf5Reader::Open(src));
  const Hdf5Info info = reader->info();
  TiffWriteOptions o;
  o.frames = info.frames;
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffWriter> writer, TiffWriter::Open(tiff_path, info.shape, info.dtype, o));
  return CopySlices(*reader, *writer, info.shape.z, ConvertStep(info.shape, info.dtype, info.chunk_slices), progress,
                    cancel, src.ToString());
}

Status ConvertTiffToHdf5(const std::string& tiff_path, const VolumePath& dst, const SliceProgress& progress) {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffStackReader> reader, TiffStackReader::Open(tiff_path));
  const TiffInfo info = reader->info();
  Hdf5WriteOptions o;
  o.frames = info.frames;
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<Hdf5Writer> writer, Hdf5Writer::Open(dst, info.shape, info.dtype, o));
  return CopySlices(*reader, *writer, info.shape.z, ConvertStep(info.shape, info.dtype, 1), progress, nullptr, tiff_path);
}

}  // namespace idlegrid
