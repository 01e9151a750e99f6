// What the wizard's views draw: lazily read stacks, contrast windows, rendering with label
// overlays, orthogonal planes; and the session's compressed, change-tracked label saves.
#include <catch2/catch.hpp>

#include "idlegrid/client/session.h"
#include "idlegrid/client/slice_view.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/tiff_io.h"
#include "test_util.h"

namespace idlegrid::client {
namespace {

Volume Ramp(VolumeShape s, DType t) {
  Volume v = Volume::Create(s, t).value();
  for (int64_t i = 0; i < s.elements(); ++i) {
    if (t == DType::kUInt16) v.data<uint16_t>()[i] = static_cast<uint16_t>(i * 7 % 60000);
    if (t == DType::kUInt8) v.data<uint8_t>()[i] = static_cast<uint8_t>(i % 251);
    if (t == DType::kFloat32) v.data<float>()[i] = static_cast<float>(i) * 0.5f;
  }
  return v;
}

TEST_CASE("a lazy stack reads the slices it is asked for, equal to the file's", "[client][view]") {
  testing::TempDir dir;
  const Volume v = Ramp({9, 20, 30, 1}, DType::kUInt16);
  REQUIRE(WriteTiff(dir / "v.tif", v).ok());
  auto stack = LazyStack::Open(dir / "v.tif", 3).value();
  CHECK(stack->shape() == v.shape());
  CHECK(stack->dtype() == DType::kUInt16);
  for (int64_t z : {0, 8, 4, 8, 1, 2, 3, 0}) {
    auto s = stack->Slice(z).value();
    REQUIRE(s->shape() == VolumeShape{1, 20, 30, 1});
    CHECK(std::memcmp(s->bytes(), v.slice_bytes_at(z), v.slice_bytes()) == 0);
  }
  CHECK(stack->Slice(9).status().code() == StatusCode::kOutOfRange);
  CHECK(stack->Slice(-1).status().code() == StatusCode::kOutOfRange);

  // Not a volume; several channels: clear errors.
  testing::Spit(dir / "text.tif", "this is not a TIFF");
  auto bad = LazyStack::Open(dir / "text.tif");
  CHECK(bad.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(bad.status().message(), Catch::Contains("not a volume"));
  REQUIRE(WriteTiff(dir / "rgb.tif", Ramp({2, 4, 4, 3}, DType::kUInt8)).ok());
  CHECK_THAT(LazyStack::Open(dir / "rgb.tif").status().message(), Catch::Contains("3 channels"));
  CHECK(LazyStack::Open(dir / "missing.tif").status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("contrast windows come from percentiles and render to gray", "[client][view]") {
  Volume v = Volume::Create({2, 10, 10, 1}, DType::kFloat32).value();
  for (int64_t i = 0; i < 100; ++i) v.data<float>()[100 + i] = static_cast<float>(i);  // slice 1: 0..99
  v.data<float>()[100 + 50] = NAN;
  const Window w = AutoWindow(v, 1, 10, 90);
  CHECK(w.lo == Approx(10).margin(1));
  CHECK(w.hi == Approx(89).margin(1));
  const Window flat = AutoWindow(v, 0);  // all zeros: still a usable window
  CHECK(flat.hi > flat.lo);
  const std::vector<uint8_t> rgb = RenderGray(v, 1, {0, 99});
  REQUIRE(rgb.size() == 300u);
  CHECK(rgb[0] == 0);
  CHECK(rgb[3 * 99] == 255);
  CHECK(rgb[3 * 33] == 85);
  CHECK(rgb[3 * 33 + 1] == 85);
  CHECK(rgb[3 * 50] == 0);  // NaN shows black, not garbage
  Volume u8 = Ramp({1, 4, 4, 1}, DType::kUInt8);
  CHECK(FullRange(u8).hi == 255);
  CHECK(FullRange(Ramp({1, 4, 4, 1}, DType::kUInt16)).hi == 65535);
}

TEST_CASE("labels blend over the slice in their class colours, only inside the box", "[client][view]") {
  Volume labels = Volume::Create({2, 4, 4, 1}, DType::kUInt8).value();
  labels.at<uint8_t>(1, 0, 0) = 1;
  labels.at<uint8_t>(1, 3, 3) = 2;
  labels.at<uint8_t>(1, 2, 2) = 9;  // no colour for it: left alone
  std::vector<uint8_t> rgb(4 * 4 * 3, 100);
  BlendLabels(labels, 1, {0xFF0000, 0x0000FF}, 0.5, &rgb);
  CHECK(rgb[0] == 177);  // (100 * 128 + 255 * 128) >> 8
  CHECK(rgb[1] == 50);
  CHECK(rgb[2] == 50);
  const size_t last = 3 * 15;
  CHECK(rgb[last] == 50);
  CHECK(rgb[last + 2] == 177);
  CHECK(rgb[3 * 10] == 100);
  std::vector<uint8_t> boxed(4 * 4 * 3, 100);
  BlendLabels(labels, 1, {0xFF0000, 0x0000FF}, 0.5, &boxed, 1, 4, 1, 4);  // excludes (0, 0)
  CHECK(boxed[0] == 100);
  CHECK(boxed[last] == 50);
}

TEST_CASE("orthogonal planes hold the volume's rows and columns", "[client][view]") {
  const Volume v = Ramp({5, 6, 7, 1}, DType::kUInt16);
  const Volume xz = ExtractPlane(v, Plane::kXZ, 4).value();
  REQUIRE(xz.shape() == VolumeShape{1, 5, 7, 1});
  const Volume yz = ExtractPlane(v, Plane::kYZ, 2).value();
  REQUIRE(yz.shape() == VolumeShape{1, 5, 6, 1});
  const Volume xy = ExtractPlane(v, Plane::kXY, 3).value();
  for (int64_t z = 0; z < 5; ++z) {
    for (int64_t x = 0; x < 7; ++x) CHECK(xz.data<uint16_t>()[z * 7 + x] == v.data<uint16_t>()[v.Index(z, 4, x)]);
    for (int64_t y = 0; y < 6; ++y) CHECK(yz.data<uint16_t>()[z * 6 + y] == v.data<uint16_t>()[v.Index(z, y, 2)]);
  }
  CHECK(xy.data<uint16_t>()[8] == v.data<uint16_t>()[v.Index(3, 1, 1)]);
  CHECK(ExtractPlane(v, Plane::kYZ, 7).status().code() == StatusCode::kOutOfRange);
  CHECK(ExtractPlane(Ramp({1, 2, 2, 3}, DType::kUInt8), Plane::kXY, 0).status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("a series' slices: time point and slice, planes through one time point, a lazy stack that knows its frames", "[client][view]") {
  const SeriesIndex series{12, 3};  // 3 time points of 4 slices
  CHECK(series.depth() == 4);
  CHECK(series.Global(2, 1) == 9);
  CHECK(series.Time(9) == 2);
  CHECK(series.Slice(9) == 1);
  CHECK(series.Global(5, 9) == 11);  // clamped
  CHECK(series.Describe(9) == "Time 3 of 3, slice 2 of 4");
  CHECK(SeriesIndex{7, 1}.Describe(3) == "Slice 4 of 7");
  const Volume v = Ramp({12, 6, 7, 1}, DType::kUInt16);
  const Volume xz = ExtractPlane(v, Plane::kXZ, 4, 8, 12).value();
  REQUIRE(xz.shape() == VolumeShape{1, 4, 7, 1});
  CHECK(xz.data<uint16_t>()[1 * 7 + 3] == v.data<uint16_t>()[v.Index(9, 4, 3)]);
  const Volume yz = ExtractPlane(v, Plane::kYZ, 2, 4, 8).value();
  REQUIRE(yz.shape() == VolumeShape{1, 4, 6, 1});
  CHECK(yz.data<uint16_t>()[3 * 6 + 5] == v.data<uint16_t>()[v.Index(7, 5, 2)]);
  CHECK(ExtractPlane(v, Plane::kXZ, 4, 8, 13).status().code() == StatusCode::kOutOfRange);
  testing::TempDir dir;
  TiffWriteOptions o;
  o.frames = 3;
  REQUIRE(WriteTiff(dir / "series.tif", v, o).ok());
  auto stack = LazyStack::Open(dir / "series.tif").value();
  CHECK(stack->frames() == 3);
  CHECK(*stack->Slice(9).value() == ExtractSlab(v, SlabRange{9, 10, 0, 0}).value());
}

TEST_CASE("session labels are saved compressed, and only when they changed", "[client][view][session]") {
  testing::TempDir dir;
  Annotation a(VolumeShape{64, 128, 128, 1});
  REQUIRE(a.AddClass("one").ok());
  const uint64_t r0 = a.revision();
  REQUIRE(a.Stroke(3, {{10, 10}, {90, 40}}, 5, 1).ok());
  CHECK(a.revision() > r0);
  Session s;
  s.image_path = "/x.tif";
  REQUIRE(SaveSession(dir.path(), s, a).ok());
  const uint64_t size = FileSize(dir / "labels.tif").value();
  CHECK(size < 64 * 128 * 128 / 20);  // 1 MiB of labels, mostly zeros
  const Volume back = ReadTiff(dir / "labels.tif").value();
  CHECK(std::memcmp(back.bytes(), a.labels().bytes(), back.size_bytes()) == 0);
  // Without label changes only session.json is written: the labels file stays as it was.
  testing::Spit(dir / "labels.tif", testing::Slurp(dir / "labels.tif") + "");
  std::filesystem::last_write_time(dir / "labels.tif", std::filesystem::file_time_type::clock::now() - std::chrono::hours(1));
  const auto before = std::filesystem::last_write_time(dir / "labels.tif");
  s.slice = 7;
  REQUIRE(SaveSession(dir.path(), s, a, false).ok());
  CHECK(std::filesystem::last_write_time(dir / "labels.tif") == before);
  CHECK(LoadSession(dir.path()).value().session.slice == 7);
  // A missing labels file is written even then.
  std::filesystem::remove(dir / "labels.tif");
  REQUIRE(SaveSession(dir.path(), s, a, false).ok());
  CHECK(LoadSession(dir.path()).ok());
  // Nothing painted (everything undone): no labels file; the session reopens on the image's
  // shape with its classes.
  while (a.Undo()) {
  }
  REQUIRE(a.labelled() == 0);
  REQUIRE(WriteTiff(dir / "image.tif", Ramp({64, 128, 128, 1}, DType::kUInt8)).ok());
  s.image_path = dir / "image.tif";
  REQUIRE(SaveSession(dir.path(), s, a).ok());
  CHECK_FALSE(std::filesystem::exists(dir / "labels.tif"));
  LoadedSession back2 = LoadSession(dir.path()).value();
  CHECK(back2.annotation.shape() == a.shape());
  CHECK(back2.annotation.labelled() == 0);
  REQUIRE(back2.annotation.classes().size() == 1);
  CHECK(back2.annotation.classes()[0].name == "one");
}

TEST_CASE("an overview reduces a stack in-plane within its budget and shows the orthogonal planes", "[client][view]") {
  testing::TempDir dir;
  // 6 time points of 5 slices, 70 x 50 uint16 (210,000 bytes), in a budget of 25,000 bytes:
  // every 2nd row and column would take 52,500; every 3rd, 24 x 17 per slice, 24,480.
  const Volume v = Ramp({30, 70, 50, 1}, DType::kUInt16);
  REQUIRE(WriteTiff(dir / "v.tif", v).ok());
  const int64_t f = OverviewFactor(v.shape(), v.dtype(), 25000);
  CHECK(f == 3);
  Overview o = BuildOverview(dir / "v.tif", f).value();
  CHECK(o.reduced.shape() == VolumeShape{30, 24, 17, 1});
  CHECK(static_cast<int64_t>(o.reduced.size_bytes()) <= 25000);
  // Every plane is the full volume's plane at every f-th row and column.
  for (int64_t y : {0, 34, 69}) {
    const Volume full = ExtractPlane(v, Plane::kXZ, y / f * f, 10, 15).value();
    const Volume part = o.Through(Plane::kXZ, y, 10, 15).value();
    REQUIRE(part.shape() == VolumeShape{1, 5, 17, 1});
    for (int64_t z = 0; z < 5; ++z) {
      for (int64_t x = 0; x < 17; ++x) CHECK(part.data<uint16_t>()[z * 17 + x] == full.data<uint16_t>()[z * 50 + x * f]);
    }
  }
  const Volume yz = o.Through(Plane::kYZ, 49, 0, 30).value();
  CHECK(yz.shape() == VolumeShape{1, 30, 24, 1});
  CHECK(yz.data<uint16_t>()[7 * 24 + 5] == v.data<uint16_t>()[v.Index(7, 5 * f, 49 / f * f)]);
  CHECK(o.Through(Plane::kXZ, 70).status().code() == StatusCode::kOutOfRange);
  // A small stack is its own overview; a stop between slices is CANCELLED.
  CHECK(OverviewFactor(v.shape(), v.dtype(), int64_t{1} << 20) == 1);
  int64_t seen = 0;
  auto stop = BuildOverview(dir / "v.tif", 2, [&](int64_t done, int64_t total) {
    CHECK(total == 30);
    seen = done;
    return done < 4;
  });
  CHECK(stop.status().code() == StatusCode::kCancelled);
  CHECK(seen == 4);
  CHECK(BuildOverview(dir / "missing.tif", 2).status().code() != StatusCode::kOk);
  CHECK(BuildOverview(dir / "v.tif", 0).status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("the uncertainty strip colours each slice by its review, the worst where columns share slices", "[client][view]") {
  const std::map<int64_t, double> u{{12, 0.0}, {14, 1.0}, {15, 0.5}, {30, 0.9}};
  // Time point 1 of a series of 10-slice time points: slices 10..19, one column each.
  const std::vector<uint32_t> strip = UncertaintyStrip(u, 10, 10, 10);
  REQUIRE(strip.size() == 10);
  CHECK(strip[0] == 0xE0E0E0);  // not reviewed
  CHECK(strip[2] == 0xFFF5C8);  // reviewed, certain: pale
  CHECK(strip[4] == 0xB40000);  // the most uncertain: deep red
  CHECK(strip[5] != strip[2]);
  CHECK(strip[5] != strip[4]);
  // Two slices per column: the worse of 14 and 15 wins; slice 30 is another time point's.
  const std::vector<uint32_t> half = UncertaintyStrip(u, 10, 10, 5);
  CHECK(half[2] == 0xB40000);
  CHECK(std::count(half.begin(), half.end(), 0xE0E0E0u) == 3);
  // More columns than slices: each slice spans several.
  const std::vector<uint32_t> wide = UncertaintyStrip(u, 10, 10, 40);
  CHECK(wide[16] == 0xB40000);
  CHECK(wide[19] == 0xB40000);
  CHECK(UncertaintyStrip(u, 0, 0, 5) == std::vector<uint32_t>(5, 0xE0E0E0));
  // Relative to the review's range: candidates unsure everywhere (0.6 to 0.8) still show
  // where most.
  const std::vector<uint32_t> weak = UncertaintyStrip({{0, 0.6}, {1, 0.7}, {2, 0.8}}, 0, 3, 3);
  CHECK(weak[0] == 0xFFF5C8);
  CHECK(weak[2] == 0xB40000);
  CHECK(UncertaintyStrip({{0, 0.4}}, 0, 1, 1)[0] == 0xB40000);  // one slice: the most uncertain
}

}  // namespace
}  // namespace idlegrid::client
