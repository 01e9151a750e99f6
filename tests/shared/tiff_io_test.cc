#include "idlegrid/shared/tiff_io.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <regex>

#include <catch2/catch.hpp>
#include <tiffio.h>

#include "test_util.h"

namespace idlegrid {
namespace {

using testing::TempDir;

template <typename T>
Volume Pattern(VolumeShape shape, DType dtype) {
  Volume v = Volume::Create(shape, dtype).value();
  T* d = v.data<T>();
  for (int64_t i = 0; i < shape.elements(); ++i) {
    d[i] = static_cast<T>(dtype == DType::kFloat32 ? i * 0.25 - 3.5 : (i * 37 + 11) % 60000);
  }
  return v;
}

int CountMatches(const std::string& text, const std::string& pattern) {
  std::regex re(pattern);
  return static_cast<int>(std::distance(std::sregex_iterator(text.begin(), text.end(), re),
                                        std::sregex_iterator()));
}

// Writes pages with libtiff directly, to test files we did not write ourselves.
struct RawPage {
  uint32_t width, height;
  uint16_t bits, format, spp = 1, compression = COMPRESSION_NONE;
  bool tiled = false;
};
void WriteRaw(const std::string& path, const std::vector<RawPage>& pages) {
  TIFF* tif = TIFFOpen(path.c_str(), "w");
  REQUIRE(tif != nullptr);
  for (const RawPage& p : pages) {
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, p.width);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, p.height);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, p.bits);
    TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, p.format);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, p.spp);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, p.spp == 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(tif, TIFFTAG_COMPRESSION, p.compression);
    size_t row = static_cast<size_t>(p.width) * p.spp * (p.bits / 8);
    std::vector<uint8_t> image(row * p.height);
    for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<uint8_t>(i * 13 + 1);
    if (p.tiled) {
      TIFFSetField(tif, TIFFTAG_TILEWIDTH, 16u);
      TIFFSetField(tif, TIFFTAG_TILELENGTH, 16u);
      std::vector<uint8_t> tile(16 * 16 * p.spp * (p.bits / 8));
      for (uint32_t ty = 0; ty < p.height; ty += 16) {
        for (uint32_t tx = 0; tx < p.width; tx += 16) {
          std::fill(tile.begin(), tile.end(), 0);
          for (uint32_t r = 0; r < 16 && ty + r < p.height; ++r) {
            size_t n = std::min<size_t>(16, p.width - tx) * p.spp * (p.bits / 8);
            std::memcpy(tile.data() + r * 16 * p.spp * (p.bits / 8),
                        image.data() + (ty + r) * row + tx * p.spp * (p.bits / 8), n);
          }
          TIFFWriteTile(tif, tile.data(), tx, ty, 0, 0);
        }
      }
    } else {
      TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, 5u);
      for (uint32_t y = 0; y < p.height; ++y) TIFFWriteScanline(tif, image.data() + y * row, y, 0);
    }
    TIFFWriteDirectory(tif);
  }
  TIFFClose(tif);
}

TEST_CASE("stacks of each sample type round-trip exactly", "[tiff]") {
  TempDir dir;
  Volume u8 = Pattern<uint8_t>({5, 17, 23, 1}, DType::kUInt8);
  Volume u16 = Pattern<uint16_t>({4, 9, 31, 1}, DType::kUInt16);
  Volume f32 = Pattern<float>({3, 8, 8, 1}, DType::kFloat32);
  for (const Volume* v : {&u8, &u16, &f32}) {
    std::string path = dir / (std::string(DTypeName(v->dtype())) + ".tif");
    REQUIRE(WriteTiff(path, *v).ok());
    StatusOr<Volume> back = ReadTiff(path);
    REQUIRE(back.ok());
    CHECK(*back == *v);
    TiffInfo info = ProbeTiff(path).value();
    CHECK(info.shape == v->shape());
    CHECK(info.dtype == v->dtype());
    CHECK(info.imagej);
    CHECK_FALSE(info.bigtiff);
    CHECK_FALSE(std::filesystem::exists(path + ".part"));
  }
}

TEST_CASE("an independent reader (tiffinfo) sees an ImageJ stack of the right shape", "[tiff]") {
  TempDir dir;
  Volume v = Pattern<uint16_t>({6, 20, 30, 1}, DType::kUInt16);
  REQUIRE(WriteTiff(dir / "stack.tif", v).ok());
  int rc = -1;
  std::string info = testing::RunCommand("tiffinfo " + (dir / "stack.tif") + " 2>&1", &rc);
  REQUIRE(rc == 0);
  CHECK(CountMatches(info, "TIFF Directory at offset") == 6);
  CHECK(CountMatches(info, "Image Width: 30 Image Length: 20") == 6);
  CHECK(CountMatches(info, "Bits/Sample: 16") == 6);
  CHECK(info.find("ImageJ=") != std::string::npos);
  CHECK(info.find("images=6") != std::string::npos);
  CHECK(info.find("slices=6") != std::string::npos);

  Volume f = Pattern<float>({2, 4, 4, 1}, DType::kFloat32);
  REQUIRE(WriteTiff(dir / "float.tif", f).ok());
  std::string finfo = testing::RunCommand("tiffinfo " + (dir / "float.tif") + " 2>&1");
  CHECK(CountMatches(finfo, "Sample Format: IEEE floating point") == 2);
}

TEST_CASE("channels are written as an ImageJ hyperstack and read back interleaved", "[tiff]") {
  TempDir dir;
  Volume v = Pattern<uint8_t>({3, 6, 7, 2}, DType::kUInt8);
  REQUIRE(WriteTiff(dir / "c.tif", v).ok());
  std::string info = testing::RunCommand("tiffinfo " + (dir / "c.tif") + " 2>&1");
  CHECK(CountMatches(info, "TIFF Directory at offset") == 6);  // Z * C pages
  CHECK(info.find("channels=2") != std::string::npos);
  CHECK(info.find("hyperstack=true") != std::string::npos);
  StatusOr<Volume> back = ReadTiff(dir / "c.tif");
  REQUIRE(back.ok());
  CHECK(*back == v);
  CHECK(back->at<uint8_t>(2, 5, 6, 1) == v.at<uint8_t>(2, 5, 6, 1));
}

TEST_CASE("BigTIFF is chosen past the threshold and reads back", "[tiff]") {
  TempDir dir;
  Volume v = Pattern<uint16_t>({4, 16, 16, 1}, DType::kUInt16);
  TiffWriteOptions options;
  options.bigtiff_threshold_bytes = 1000;  // stands in for 4 GiB
  auto w = TiffWriter::Open(dir / "big.tif", v.shape(), v.dtype(), options).value();
  CHECK(w->bigtiff());
  REQUIRE(w->Append(v).ok());
  REQUIRE(w->Close().ok());
  std::string header = testing::Slurp(dir / "big.tif").substr(0, 4);
  CHECK(header == std::string("II\x2b\x00", 4));  // BigTIFF magic (43)
  TiffInfo info = ProbeTiff(dir / "big.tif").value();
  CHECK(info.bigtiff);
  CHECK(ReadTiff(dir / "big.tif").value() == v);
  CHECK_FALSE(TiffWriter::Open(dir / "small.tif", v.shape(), v.dtype()).value()->bigtiff());
}

TEST_CASE("a Z range reads only those slices", "[tiff]") {
  TempDir dir;
  Volume v = Pattern<uint16_t>({10, 8, 9, 1}, DType::kUInt16);
  REQUIRE(WriteTiff(dir / "s.tif", v).ok());
  TiffReadOptions range;
  range.z_begin = 3;
  range.z_end = 7;
  Volume part = ReadTiff(dir / "s.tif", range).value();
  CHECK(part.shape().z == 4);
  CHECK(part == ExtractSlab(v, SlabRange{3, 7, 0, 0}).value());
  range.z_end = 11;
  CHECK(ReadTiff(dir / "s.tif", range).status().code() == StatusCode::kOutOfRange);
  TiffReadOptions tiny;
  tiny.max_bytes = 100;
  CHECK(ReadTiff(dir / "s.tif", tiny).status().code() == StatusCode::kResourceExhausted);
}

TEST_CASE("a stack reader reads ranges in any order through one handle", "[tiff]") {
  TempDir dir;
  Volume v = Pattern<uint16_t>({30, 8, 9, 2}, DType::kUInt16);  // channels: two pages a slice
  REQUIRE(WriteTiff(dir / "s.tif", v).ok());
  auto reader = TiffStackReader::Open(dir / "s.tif").value();
  CHECK(reader->info().shape == v.shape());
  for (auto [b, e] : std::vector<std::pair<int64_t, int64_t>>{{0, 4}, {4, 5}, {20, 30}, {2, 9}, {29, 30}, {0, 30}}) {
    INFO(b << " " << e);
    CHECK(reader->ReadSlices(b, e).value() == ExtractSlab(v, SlabRange{b, e, 0, 0}).value());
  }
  CHECK(reader->ReadSlices(28, 31).status().code() == StatusCode::kOutOfRange);
  CHECK(reader->ReadSlices(3, 4).value() == ExtractSlab(v, SlabRange{3, 4, 0, 0}).value());  // still usable
}

TEST_CASE("a region's slices are copied into a stack of their own", "[tiff]") {
  TempDir dir;
  Volume v = Pattern<uint8_t>({40, 16, 12, 1}, DType::kUInt8);
  REQUIRE(WriteTiff(dir / "s.tif", v).ok());
  const SliceRegion region = SliceRegion::Around({3, 4, 30}, 2, 40);  // [1, 7) and [28, 33)
  REQUIRE(region.runs == std::vector<std::pair<int64_t, int64_t>>{{1, 7}, {28, 33}});
  TiffWriteOptions deflate;
  deflate.deflate = true;
  // Chunks smaller than a run: the copy streams.
  REQUIRE(CopyTiffSlices(dir / "s.tif", region, dir / "cut.tif", deflate, 16 * 12 * 2).ok());
  Volume cut = ReadTiff(dir / "cut.tif").value();
  CHECK(cut == ExtractRegion(v, region).value());
  CHECK(cut.shape().z == 11);
  // The same slices give the same bytes (what makes cuts content-addressed).
  REQUIRE(CopyTiffSlices(dir / "s.tif", region, dir / "again.tif", deflate).ok());
  CHECK(testing::Slurp(dir / "again.tif") == testing::Slurp(dir / "cut.tif"));
  // A region of another depth, or past the end, is refused without writing anything.
  CHECK(CopyTiffSlices(dir / "s.tif", SliceRegion::Range(41, 0, 3), dir / "bad.tif").code() == StatusCode::kInvalidArgument);
  SliceRegion past = SliceRegion::Range(40, 38, 42);
  CHECK_THAT(CopyTiffSlices(dir / "s.tif", past, dir / "bad.tif").message(), Catch::Contains("outside 40 slices"));
  CHECK_FALSE(std::filesystem::exists(dir / "bad.tif"));
}

TEST_CASE("streaming writes appear only when complete", "[tiff]") {
  TempDir dir;
  Volume v = Pattern<uint8_t>({6, 5, 5, 1}, DType::kUInt8);
  {
    auto w = TiffWriter::Open(dir / "out.tif", v.shape(), v.dtype()).value();
    REQUIRE(w->Append(ExtractSlab(v, SlabRange{0, 2, 0, 0}).value()).ok());
    CHECK_FALSE(std::filesystem::exists(dir / "out.tif"));
    CHECK(w->Close().code() == StatusCode::kFailedPrecondition);  // 2 of 6 slices
  }
  CHECK_FALSE(std::filesystem::exists(dir / "out.tif"));
  CHECK_FALSE(std::filesystem::exists(dir / "out.tif.part"));
  auto w = TiffWriter::Open(dir / "out.tif", v.shape(), v.dtype()).value();
  for (const SlabRange& s : PlanSlabs(6, 4, 0).value()) {
    REQUIRE(w->Append(ExtractSlab(v, s).value()).ok());
  }
  Volume wrong = Volume::Create({1, 5, 5, 1}, DType::kUInt16).value();
  CHECK(w->Append(wrong).code() == StatusCode::kInvalidArgument);
  CHECK(w->Append(ExtractSlab(v, SlabRange{0, 1, 0, 0}).value()).code() ==
        StatusCode::kOutOfRange);
  REQUIRE(w->Close().ok());
  CHECK(ReadTiff(dir / "out.tif").value() == v);
}

// Sets a SHORT or LONG tag of the first directory of a little-endian classic TIFF.
void PatchTag(std::string& bytes, uint16_t tag, uint32_t value) {
  uint32_t ifd;
  std::memcpy(&ifd, bytes.data() + 4, 4);
  uint16_t entries;
  std::memcpy(&entries, bytes.data() + ifd, 2);
  for (uint16_t e = 0; e < entries; ++e) {
    size_t entry = ifd + 2 + 12u * e;
    uint16_t t, type;
    std::memcpy(&t, bytes.data() + entry, 2);
    std::memcpy(&type, bytes.data() + entry + 2, 2);
    if (t != tag) continue;
    if (type == TIFF_SHORT) {
      uint16_t v = static_cast<uint16_t>(value);
      std::memcpy(bytes.data() + entry + 8, &v, 2);
    } else {
      std::memcpy(bytes.data() + entry + 8, &value, 4);
    }
    return;
  }
  FAIL("tag not found");
}

TEST_CASE("truncated files are DATA_LOSS, never a short volume", "[tiff]") {
  TempDir dir;
  Volume v = Pattern<uint16_t>({8, 32, 32, 1}, DType::kUInt16);
  REQUIRE(WriteTiff(dir / "full.tif", v).ok());
  std::string bytes = testing::Slurp(dir / "full.tif");
  for (double fraction : {0.3, 0.5, 0.9, 0.999}) {
    std::string cut = bytes.substr(0, static_cast<size_t>(bytes.size() * fraction));
    testing::Spit(dir / "cut.tif", cut);
    StatusOr<Volume> r = ReadTiff(dir / "cut.tif");
    INFO(fraction << ": " << r.status().ToString());
    REQUIRE_FALSE(r.ok());
    CHECK((r.status().code() == StatusCode::kDataLoss ||
           r.status().code() == StatusCode::kInvalidArgument));
    CHECK_FALSE(ReadTiffFromMemory(cut).ok());
  }
  // The directory is intact but its strip points past the end of the file.
  Volume one = Pattern<uint8_t>({1, 64, 64, 1}, DType::kUInt8);
  REQUIRE(WriteTiff(dir / "one.tif", one).ok());
  std::string b1 = testing::Slurp(dir / "one.tif");
  PatchTag(b1, TIFFTAG_STRIPOFFSETS, static_cast<uint32_t>(b1.size() - 100));
  testing::Spit(dir / "short_strip.tif", b1);
  StatusOr<Volume> short_strip = ReadTiff(dir / "short_strip.tif");
  CHECK(short_strip.status().code() == StatusCode::kDataLoss);
  CHECK(short_strip.status().message().find("strip 0 is missing or truncated") != std::string::npos);
}

TEST_CASE("non-TIFF and missing files give clear errors", "[tiff]") {
  TempDir dir;
  testing::Spit(dir / "text.tif", "this is not an image");
  StatusOr<Volume> r = ReadTiff(dir / "text.tif");
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
  CHECK(r.status().message().find("not a TIFF") != std::string::npos);
  CHECK(ReadTiff(dir / "absent.tif").status().code() == StatusCode::kNotFound);
  CHECK(ReadTiffFromMemory("").status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("foreign TIFFs: tiles, compression and RGB samples are read", "[tiff]") {
  TempDir dir;
  WriteRaw(dir / "tiled.tif", {{40, 35, 8, SAMPLEFORMAT_UINT, 1, COMPRESSION_NONE, true},
                               {40, 35, 8, SAMPLEFORMAT_UINT, 1, COMPRESSION_NONE, true}});
  WriteRaw(dir / "striped.tif", {{40, 35, 8, SAMPLEFORMAT_UINT, 1, COMPRESSION_LZW, false},
                                 {40, 35, 8, SAMPLEFORMAT_UINT, 1, COMPRESSION_ADOBE_DEFLATE, false}});
  Volume tiled = ReadTiff(dir / "tiled.tif").value();
  Volume striped = ReadTiff(dir / "striped.tif").value();
  CHECK(tiled.shape() == VolumeShape{2, 35, 40, 1});
  CHECK(tiled == striped);  // same pixels whatever the layout and compression
  CHECK(tiled.at<uint8_t>(0, 0, 1) == 14);

  WriteRaw(dir / "rgb.tif", {{10, 10, 8, SAMPLEFORMAT_UINT, 3}});
  Volume rgb = ReadTiff(dir / "rgb.tif").value();
  CHECK(rgb.shape() == VolumeShape{1, 10, 10, 3});
  CHECK(rgb.at<uint8_t>(0, 0, 0, 2) == 27);
}

TEST_CASE("a tile size claimed by the file cannot make us allocate gigabytes", "[tiff]") {
  TempDir dir;
  WriteRaw(dir / "t.tif", {{40, 35, 8, SAMPLEFORMAT_UINT, 1, COMPRESSION_NONE, true}});
  std::string bytes = testing::Slurp(dir / "t.tif");
  PatchTag(bytes, TIFFTAG_TILEWIDTH, 65536);
  PatchTag(bytes, TIFFTAG_TILELENGTH, 65536);
  CHECK_FALSE(ReadTiffFromMemory(bytes).ok());
}

TEST_CASE("unsupported and inconsistent TIFFs are refused with a reason", "[tiff]") {
  TempDir dir;
  WriteRaw(dir / "int16.tif", {{8, 8, 16, SAMPLEFORMAT_INT}});
  StatusOr<Volume> r = ReadTiff(dir / "int16.tif");
  CHECK(r.status().code() == StatusCode::kUnimplemented);
  CHECK(r.status().message().find("16-bit signed integer") != std::string::npos);

  WriteRaw(dir / "mixed.tif", {{8, 8, 8, SAMPLEFORMAT_UINT}, {9, 8, 8, SAMPLEFORMAT_UINT}});
  StatusOr<Volume> m = ReadTiff(dir / "mixed.tif");
  CHECK(m.status().code() == StatusCode::kInvalidArgument);
  CHECK(m.status().message().find("unlike the first page") != std::string::npos);
}

TEST_CASE("an ImageJ description that disagrees with the pages is DATA_LOSS", "[tiff]") {
  TempDir dir;
  Volume v = Pattern<uint8_t>({4, 4, 4, 1}, DType::kUInt8);
  REQUIRE(WriteTiff(dir / "v.tif", v).ok());
  std::string bytes = testing::Slurp(dir / "v.tif");
  size_t at = bytes.find("images=4");
  REQUIRE(at != std::string::npos);
  bytes[at + 7] = '9';
  testing::Spit(dir / "lie.tif", bytes);
  StatusOr<Volume> r = ReadTiff(dir / "lie.tif");
  CHECK(r.status().code() == StatusCode::kDataLoss);
  CHECK(r.status().message().find("truncated") != std::string::npos);
}

// Stacks as tifffile (Debian's python3-tifffile) writes them, from a Python snippet.
void WriteWithTifffile(const std::string& script) {
  int rc = -1;
  const std::string out = testing::RunCommand("/usr/bin/python3 -c 'import numpy as np, tifffile\n" + script + "' 2>&1", &rc);
  INFO(out);
  REQUIRE(rc == 0);
}

TEST_CASE("stacks written by tifffile open the way their writer meant them", "[tiff]") {
  TempDir dir;
  const std::string d = dir.path();
  // A 3D array saved with imagej=True and no axes: tifffile writes "channels=181" and no
  // slices. Read as 181 slices, and say so.
  WriteWithTifffile("a = np.arange(181 * 20 * 24, dtype=np.uint16).reshape(181, 20, 24)\n"
                    "tifffile.imwrite(\"" + d + "/noaxes.tif\", a, imagej=True)\n"
                    "tifffile.imwrite(\"" + d + "/zyx.tif\", a, imagej=True, metadata={\"axes\": \"ZYX\"})\n"
                    "tifffile.imwrite(\"" + d + "/cyx.tif\", a[:3].astype(np.uint8), imagej=True)\n"
                    "t = (np.arange(4 * 5 * 20 * 24) % 251).astype(np.uint8).reshape(4, 5, 20, 24)\n"
                    "tifffile.imwrite(\"" + d + "/tzyx.tif\", t, imagej=True, metadata={\"axes\": \"TZYX\"})\n"
                    "tifffile.imwrite(\"" + d + "/tzcyx.tif\", np.stack([t, 255 - t], axis=2), imagej=True, "
                    "metadata={\"axes\": \"TZCYX\"})\n");
  const TiffInfo noaxes = ProbeTiff(d + "/noaxes.tif").value();
  CHECK(noaxes.shape == VolumeShape{181, 20, 24, 1});
  CHECK_THAT(noaxes.note, Catch::Contains("channels=181 and no slices") && Catch::Contains("read as 181 slices"));
  const Volume v = ReadTiff(d + "/noaxes.tif").value();
  CHECK(v.at<uint16_t>(7, 3, 5) == 7 * 480 + 3 * 24 + 5);
  CHECK(v == ReadTiff(d + "/zyx.tif").value());
  CHECK(ProbeTiff(d + "/zyx.tif").value().note.empty());
  // A few channels of one slice is what such a file says and what Fiji shows: kept.
  const TiffInfo cyx = ProbeTiff(d + "/cyx.tif").value();
  CHECK(cyx.shape == VolumeShape{1, 20, 24, 3});
  CHECK(cyx.note.empty());
  // Time series: T time points of Z slices, time slowest (as ImageJ stores them).
  const TiffInfo tzyx = ProbeTiff(d + "/tzyx.tif").value();
  CHECK(tzyx.shape == VolumeShape{20, 20, 24, 1});
  CHECK(tzyx.frames == 4);
  const Volume series = ReadTiff(d + "/tzyx.tif").value();
  CHECK(series.at<uint8_t>(2 * 5 + 3, 7, 9) == ((2 * 5 + 3) * 480 + 7 * 24 + 9) % 251);  // t=2, z=3
  const TiffInfo tzcyx = ProbeTiff(d + "/tzcyx.tif").value();
  CHECK(tzcyx.shape == VolumeShape{20, 20, 24, 2});
  CHECK(tzcyx.frames == 4);
  const Volume two = ReadTiff(d + "/tzcyx.tif").value();
  CHECK(two.at<uint8_t>(13, 7, 9, 0) == series.at<uint8_t>(13, 7, 9));
  CHECK(two.at<uint8_t>(13, 7, 9, 1) == 255 - series.at<uint8_t>(13, 7, 9));
  // A description that cannot fit the pages says what it claims and what the file holds.
  std::string bytes = testing::Slurp(d + "/zyx.tif");
  const size_t at = bytes.find("slices=181");
  REQUIRE(at != std::string::npos);
  bytes.replace(at, 10, "channels=7");
  testing::Spit(d + "/odd.tif", bytes);
  const Status odd = ProbeTiff(d + "/odd.tif").status();
  CHECK(odd.code() == StatusCode::kDataLoss);
  CHECK_THAT(odd.message(), Catch::Contains("channels=7, but its 181 pages are not a whole number of slices"));
}

TEST_CASE("a time series is written as a hyperstack that tifffile and Fiji read as T x Z", "[tiff]") {
  TempDir dir;
  const std::string d = dir.path();
  const Volume v = Pattern<uint16_t>({12, 6, 5, 1}, DType::kUInt16);  // 3 time points of 4 slices
  TiffWriteOptions o;
  o.frames = 3;
  REQUIRE(WriteTiff(d + "/series.tif", v, o).ok());
  const TiffInfo info = ProbeTiff(d + "/series.tif").value();
  CHECK(info.frames == 3);
  CHECK(info.shape == v.shape());
  CHECK(ReadTiff(d + "/series.tif").value() == v);
  const std::string desc = testing::Slurp(d + "/series.tif");
  CHECK(desc.find("slices=4\nframes=3\nhyperstack=true") != std::string::npos);
  // tifffile, reading our file the way Fiji does (its ImageJ metadata): axes TZYX.
  int rc = -1;
  const std::string out = testing::RunCommand(
      "/usr/bin/python3 -c 'import tifffile\nwith tifffile.TiffFile(\"" + d + "/series.tif\") as f:\n"
      "  s = f.series[0]; a = s.asarray(); print(s.axes, a.shape, int(a[2, 1, 3, 4]))' 2>&1", &rc);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains("TZYX (3, 4, 6, 5) " + std::to_string(v.at<uint16_t>(2 * 4 + 1, 3, 4))));
  // Frames that do not divide the slices are refused before anything is written.
  o.frames = 5;
  CHECK_THAT(WriteTiff(d + "/odd.tif", v, o).message(), Catch::Contains("12 slices are not 5 time points"));
  CHECK_FALSE(std::filesystem::exists(d + "/odd.tif"));
  // A description whose frames x slices x channels is not the pages: DATA_LOSS naming both.
  std::string bytes = desc;
  const size_t at = bytes.find("frames=3");
  REQUIRE(at != std::string::npos);
  bytes[at + 7] = '2';
  testing::Spit(d + "/lie.tif", bytes);
  const Status lie = ProbeTiff(d + "/lie.tif").status();
  CHECK(lie.code() == StatusCode::kDataLoss);
  CHECK_THAT(lie.message(), Catch::Contains("lie.tif") && Catch::Contains("frames=2, slices=4, channels=1 (8 pages), but the file has 12 pages"));
}

TEST_CASE("labels of one time point are placed in a series, the other time points empty", "[tiff]") {
  TempDir dir;
  Volume one = Volume::Create({3, 8, 10, 1}, DType::kUInt8).value();
  for (int64_t i = 0; i < one.shape().elements(); ++i) one.data<uint8_t>()[i] = static_cast<uint8_t>(i % 3);
  REQUIRE(WriteTiff(dir / "t.tif", one).ok());
  REQUIRE(PlaceInSeries(dir / "t.tif", 4, 2, dir / "series.tif").ok());
  const TiffInfo info = ProbeTiff(dir / "series.tif").value();
  CHECK(info.frames == 4);
  CHECK(info.shape == VolumeShape{12, 8, 10, 1});
  const Volume series = ReadTiff(dir / "series.tif").value();
  const size_t frame_bytes = one.size_bytes();
  for (int64_t t = 0; t < 4; ++t) {
    const uint8_t* p = series.bytes() + static_cast<size_t>(t) * frame_bytes;
    if (t == 2) {
      CHECK(std::memcmp(p, one.bytes(), frame_bytes) == 0);
    } else {
      CHECK(std::all_of(p, p + frame_bytes, [](uint8_t v) { return v == 0; }));
    }
  }
  // A time point outside the series, or labels that are already a series: named, nothing written.
  Status st = PlaceInSeries(dir / "t.tif", 4, 4, dir / "bad.tif");
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::Contains("time point 5 is outside the series' 4"));
  st = PlaceInSeries(dir / "series.tif", 4, 0, dir / "bad.tif");
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::Contains("already a series of 4 time points"));
  CHECK_FALSE(std::filesystem::exists(dir / "bad.tif"));
}

TEST_CASE("reading a stack a range at a time never maps the file into memory", "[tiff]") {
  // A mapped file's pages count in the reader's RSS as it reads them: a worker reading its
  // slab, or the server cutting a volume, grew with what it read.
  TempDir dir;
  Volume v = Volume::Create({16, 64, 64, 1}, DType::kUInt16).value();
  REQUIRE(WriteTiff(dir / "stack.tif", v).ok());
  auto mapped = [&] {
    const std::string maps = testing::Slurp("/proc/self/maps");
    return maps.find(dir / "stack.tif") != std::string::npos;
  };
  auto reader = TiffStackReader::Open(dir / "stack.tif").value();
  for (int64_t z = 0; z < 16; ++z) REQUIRE(reader->ReadSlices(z, z + 1).ok());
  CHECK_FALSE(mapped());
  TiffReadOptions part;
  part.z_begin = 3;
  part.z_end = 5;
  REQUIRE(ReadTiff(dir / "stack.tif", part).ok());
  REQUIRE(ProbeTiff(dir / "stack.tif").ok());
  CHECK_FALSE(mapped());
}

TEST_CASE("memory and file readers agree", "[tiff]") {
  TempDir dir;
  Volume v = Pattern<float>({3, 7, 5, 2}, DType::kFloat32);
  REQUIRE(WriteTiff(dir / "m.tif", v).ok());
  CHECK(ReadTiffFromMemory(testing::Slurp(dir / "m.tif")).value() == v);
}

}  // namespace
}  // namespace idlegrid
