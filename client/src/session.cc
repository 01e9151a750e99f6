#include "idlegrid/client/session.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "idlegrid/shared/files.h"
#include "idlegrid/shared/protocol.h"
#include "idlegrid/shared/tiff_io.h"

namespace idlegrid::client {

Json Session::ToJson() const {
  Json js = Json::array();
  for (const SessionJob& j : jobs) js.push_back({{"job_id", j.job_id}, {"purpose", j.purpose}});
  return {{"schema", 1},          {"image", image_path},     {"local_grid", local_grid},
          {"server", server},     {"fingerprint", fingerprint}, {"jobs", js},
          {"chosen_model", chosen_model}, {"painting_seconds", painting_seconds}, {"slice", slice}};
}

StatusOr<Session> Session::FromJson(const Json& j) {
  JsonReader r(j, "session");
  if (r.Int("schema", 1, 1) != 1) return InvalidArgumentError("unknown session schema");
  Session s;
  s.image_path = r.String("image", 4096);
  s.local_grid = r.Bool("local_grid");
  s.server = r.String("server", kMaxUrlLength, true);
  s.fingerprint = r.String("fingerprint", 200, true);
  for (const Json& e : r.Array("jobs", 10000)) {
    JsonReader jr(e, "session.jobs[]");
    SessionJob job;
    job.job_id = jr.Id("job_id");
    job.purpose = jr.Enum("purpose", {"candidates", "retrain", "apply", "denoise"});
    IDLEGRID_RETURN_IF_ERROR(jr.Finish());
    s.jobs.push_back(job);
  }
  s.chosen_model = r.String("chosen_model", 64, true);
  s.painting_seconds = r.Number("painting_seconds", 0, 1e9);
  s.slice = r.Int("slice", 0, kMaxSlices);
  IDLEGRID_RETURN_IF_ERROR(r.Finish());
  return s;
}

namespace {

// A label stack read a bounded range of slices at a time into a zero volume, copying only
// the slices that hold a label: the pages of unpainted slices are never touched (Volume::
// Create), so a session reopened on a large volume holds memory for its painted slices.
StatusOr<Volume> ReadSparseLabels(const std::string& path) {
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<TiffStackReader> reader, TiffStackReader::Open(path));
  const TiffInfo info = reader->info();
  IDLEGRID_ASSIGN_OR_RETURN(Volume out, Volume::Create(info.shape, info.dtype));
  const int64_t slice = static_cast<int64_t>(out.slice_bytes());
  const int64_t step = std::max<int64_t>(1, (int64_t{16} << 20) / std::max<int64_t>(slice, 1));
  for (int64_t z = 0; z < info.shape.z; z += step) {
    IDLEGRID_ASSIGN_OR_RETURN(Volume part, reader->ReadSlices(z, std::min(info.shape.z, z + step)));
    for (int64_t i = 0; i < part.shape().z; ++i) {
      const uint8_t* p = part.slice_bytes_at(i);
      if (std::any_of(p, p + slice, [](uint8_t b) { return b != 0; })) std::memcpy(out.slice_bytes_at(z + i), p, static_cast<size_t>(slice));
    }
  }
  return out;
}

}  // namespace

Status SaveSession(const std::string& dir, const Session& session, const Annotation& annotation, bool labels) {
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  // Labels first (atomically), then the session that names them: a crash between the two
  // leaves the older session with newer labels, never a session without its labels.
  const std::string path = dir + "/labels.tif";
  if (annotation.labelled() == 0) {
    // Nothing painted: no labels file (a 512³ session opens without writing 128 MiB).
    if (std::remove(path.c_str()) != 0 && errno != ENOENT) return ErrnoError("remove " + path, errno);
  } else if (labels || !FileSize(path).ok()) {
    const std::string tmp = path + ".tmp";
    TiffWriteOptions o;
    o.deflate = true;  // mostly zeros: a 512³ label volume is ~1 MiB instead of 128 MiB
    IDLEGRID_RETURN_IF_ERROR(WriteTiff(tmp, annotation.labels(), o));
    if (std::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("rename " + tmp, errno);
  }
  Json j = session.ToJson();
  j["classes"] = annotation.ClassesToJson();
  return WriteFileAtomic(dir + "/session.json", j.dump(2) + "\n", 0600);
}

StatusOr<LoadedSession> LoadSession(const std::string& dir) {
  StatusOr<std::string> text = ReadFile(dir + "/session.json", 16 << 20);
  if (!text.ok()) return NotFoundError("no session in " + dir);
  StatusOr<Json> j = ParseJson(*text);
  if (!j.ok()) return DataLossError(dir + "/session.json is damaged: " + j.status().message());
  if (!j->is_object() || !j->contains("classes")) return DataLossError(dir + "/session.json has no classes");
  Json without = *j;
  const Json classes = without["classes"];
  without.erase("classes");
  IDLEGRID_ASSIGN_OR_RETURN(Session s, Session::FromJson(without));
  IDLEGRID_ASSIGN_OR_RETURN(std::vector<LabelClass> cls, Annotation::ClassesFromJson(classes));
  if (!FileSize(dir + "/labels.tif").ok()) {  // nothing was painted yet
    StatusOr<TiffInfo> image = ProbeTiff(s.image_path);
    if (!image.ok()) return NotFoundError("the session's volume " + s.image_path + " cannot be read");
    Annotation empty(VolumeShape{image->shape.z, image->shape.y, image->shape.x, 1});
    for (const LabelClass& c : cls) IDLEGRID_RETURN_IF_ERROR(empty.AddClass(c.name, c.rgb).status());
    return LoadedSession{std::move(s), std::move(empty)};
  }
  StatusOr<Volume> labels = ReadSparseLabels(dir + "/labels.tif");
  if (!labels.ok()) return DataLossError(dir + "/labels.tif: " + labels.status().message());
  IDLEGRID_ASSIGN_OR_RETURN(Annotation a, Annotation::FromLabels(std::move(*labels), cls));
  return LoadedSession{std::move(s), std::move(a)};
}

}  // namespace idlegrid::client
