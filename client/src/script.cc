#include "idlegrid/client/script.h"

#include <fstream>

namespace idlegrid::client {

StatusOr<std::vector<ScriptLine>> ReadScript(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError("cannot read " + path);
  std::vector<ScriptLine> out;
  std::string line;
  for (int n = 1; std::getline(in, line) && n < 1000000; ++n) {
    const size_t start = line.find_first_not_of(" \t\r");
    if (start == std::string::npos || line[start] == '#') continue;
    StatusOr<Json> cmd = ParseJson(line);
    if (!cmd.ok()) return InvalidArgumentError(path + ":" + std::to_string(n) + ": " + cmd.status().message());
    if (!cmd->is_object() || cmd->size() != 1) {
      return InvalidArgumentError(path + ":" + std::to_string(n) + ": each line is one {\"command\": argument}");
    }
    out.push_back({n, line.substr(start), std::move(*cmd)});
  }
  return out;
}

std::vector<Point> PathOf(const Json& j) {
  std::vector<Point> path;
  if (!j.is_array()) return path;
  for (const Json& p : j) {
    if (p.is_array() && p.size() == 2 && p[0].is_number() && p[1].is_number()) path.push_back({p[0], p[1]});
  }
  return path;
}

Status PaintLabels(Annotation& a, const Volume& labels, int64_t z) {
  const VolumeShape& s = labels.shape();
  if (labels.dtype() != DType::kUInt8 || s.y != a.shape().y || s.x != a.shape().x || z < 0 || z >= s.z) {
    return InvalidArgumentError("the labels do not fit the volume");
  }
  for (int64_t y = 0; y < s.y; ++y) {
    for (int64_t x = 0; x < s.x;) {
      const uint8_t v = labels.data<uint8_t>()[labels.Index(z, y, x)];
      int64_t end = x + 1;
      while (end < s.x && labels.data<uint8_t>()[labels.Index(z, y, end)] == v) ++end;
      if (v != 0) {
        IDLEGRID_RETURN_IF_ERROR(a.Stroke(z, {{double(x), double(y)}, {double(end - 1), double(y)}}, 0.5, v).status());
      }
      x = end;
    }
  }
  return Status::Ok();
}

StatusOr<Corrections> SimulateCorrections(Annotation& a, const Volume& truth, const Volume& prediction, int64_t z,
                                          int64_t step) {
  const VolumeShape& s = truth.shape();
  if (truth.dtype() != DType::kUInt8 || prediction.dtype() != DType::kUInt8 || s.y != a.shape().y ||
      s.x != a.shape().x || prediction.shape().y != s.y || prediction.shape().x != s.x || z < 0 || z >= s.z) {
    return InvalidArgumentError("the truth and prediction do not fit the volume");
  }
  step = std::max<int64_t>(1, step);
  Corrections c;
  for (int64_t y = 0; y < s.y; y += step) {
    for (int64_t x = 0; x < s.x; x += step) {
      const uint8_t t = truth.data<uint8_t>()[truth.Index(z, y, x)];
      const std::vector<Point> dab{{double(x), double(y)}};
      if (prediction.data<uint8_t>()[prediction.Index(0, y, x)] == t) {
        IDLEGRID_RETURN_IF_ERROR(a.Accept(z, dab, step / 2.0 + 0.5, prediction.data<uint8_t>()).status());
        ++c.accepted;
      } else {
        IDLEGRID_RETURN_IF_ERROR(a.Stroke(z, dab, step / 2.0 + 0.5, t).status());
        ++c.corrected;
      }
    }
  }
  return c;
}

}  // namespace idlegrid::client
