#include "idlegrid/shared/png.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>

#include "idlegrid/shared/files.h"

namespace idlegrid {

namespace {

void Put32(std::string* out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out->push_back(static_cast<char>((v >> s) & 0xff));
}

void Chunk(std::string* out, const char* type, const std::string& data) {
  Put32(out, static_cast<uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  out->append(body);
  Put32(out, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

double At(const Volume& v, int64_t i) {
  switch (v.dtype()) {
    case DType::kUInt8: return v.data<uint8_t>()[i];
    case DType::kUInt16: return v.data<uint16_t>()[i];
    case DType::kFloat32: return v.data<float>()[i];
  }
  return 0;
}

}  // namespace

Status WritePngRgb(const std::string& path, int64_t width, int64_t height, const std::vector<uint8_t>& rgb) {
  if (width <= 0 || height <= 0 || width > (1 << 24) || height > (1 << 24) ||
      static_cast<int64_t>(rgb.size()) != width * height * 3) {
    return InvalidArgumentError("PNG: " + std::to_string(rgb.size()) + " bytes do not make a " +
                                std::to_string(width) + "x" + std::to_string(height) + " RGB image");
  }
  std::string raw;
  raw.reserve(static_cast<size_t>(height * (width * 3 + 1)));
  for (int64_t y = 0; y < height; ++y) {
    raw.push_back(0);  // filter: none
    raw.append(reinterpret_cast<const char*>(rgb.data() + y * width * 3), static_cast<size_t>(width * 3));
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size, reinterpret_cast<const Bytef*>(raw.data()),
                static_cast<uLong>(raw.size()), 6) != Z_OK) {
    return InternalError("PNG: zlib failed");
  }
  packed.resize(packed_size);
  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  Put32(&ihdr, static_cast<uint32_t>(width));
  Put32(&ihdr, static_cast<uint32_t>(height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8 bits, RGB, deflate, no filter, no interlace
  Chunk(&png, "IHDR", ihdr);
  Chunk(&png, "IDAT", packed);
  Chunk(&png, "IEND", "");
  return WriteFileAtomic(path, png);
}

std::vector<uint8_t> GraySlice(const Volume& v, int64_t z) {
  const VolumeShape& s = v.shape();
  const int64_t n = s.y * s.x, base = z * n * s.c;
  std::vector<double> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[static_cast<size_t>(i)] = At(v, base + i * s.c);
  std::vector<double> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  const double lo = sorted[static_cast<size_t>(0.005 * (n - 1))], hi = sorted[static_cast<size_t>(0.995 * (n - 1))];
  std::vector<uint8_t> rgb(static_cast<size_t>(n * 3));
  for (int64_t i = 0; i < n; ++i) {
    const double t = hi > lo ? (values[static_cast<size_t>(i)] - lo) / (hi - lo) : 0.5;
    const auto g = static_cast<uint8_t>(std::lround(255 * std::clamp(t, 0.0, 1.0)));
    rgb[static_cast<size_t>(3 * i)] = rgb[static_cast<size_t>(3 * i + 1)] = rgb[static_cast<size_t>(3 * i + 2)] = g;
  }
  return rgb;
}

void OverlayLabels(const Volume& labels, int64_t z, double alpha, std::vector<uint8_t>* rgb) {
  static const uint8_t kColors[][3] = {{230, 159, 0}, {86, 180, 233}, {0, 158, 115}, {240, 228, 66},
                                       {0, 114, 178}, {213, 94, 0},   {204, 121, 167}};
  const VolumeShape& s = labels.shape();
  const int64_t n = s.y * s.x;
  const uint8_t* l = labels.data<uint8_t>() + z * n;
  for (int64_t i = 0; i < n && static_cast<size_t>(3 * i + 2) < rgb->size(); ++i) {
    if (l[i] == 0) continue;
    const uint8_t* c = kColors[(l[i] - 1) % 7];
    for (int k = 0; k < 3; ++k) {
      uint8_t& p = (*rgb)[static_cast<size_t>(3 * i + k)];
      p = static_cast<uint8_t>(std::lround((1 - alpha) * p + alpha * c[k]));
    }
  }
}

}  // namespace idlegrid
