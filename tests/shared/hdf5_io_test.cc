#include "idlegrid/shared/hdf5_io.h"

#include <catch2/catch.hpp>

#include <filesystem>

#include "idlegrid/shared/tiff_io.h"
#include "test_util.h"

namespace idlegrid {
namespace {

using testing::TempDir;

template <typename T>
Volume Ramp(VolumeShape shape, DType dtype) {
  Volume v = Volume::Create(shape, dtype).value();
  T* d = v.data<T>();
  for (int64_t i = 0; i < shape.elements(); ++i) d[i] = static_cast<T>((i * 7 + 3) % 251);
  return v;
}

// Runs a Python snippet with numpy and Debian's h5py (files as other tools write them).
std::string Python(const std::string& script) {
  int rc = -1;
  const std::string out = testing::RunCommand("/usr/bin/python3 -c 'import numpy as np, h5py, json\n" + script + "' 2>&1", &rc);
  INFO(out);
  REQUIRE(rc == 0);
  return out;
}

TEST_CASE("HDF5 names: file.h5:/dataset, plain paths, and suffixes", "[hdf5]") {
  VolumePath p = ParseVolumePath("/data/run 1/scan.h5:/entry/data/data");
  CHECK(p.hdf5);
  CHECK(p.file == "/data/run 1/scan.h5");
  CHECK(p.dataset == "/entry/data/data");
  CHECK(p.ToString() == "/data/run 1/scan.h5:/entry/data/data");
  CHECK(ParseVolumePath("x.HDF5:/v").dataset == "/v");
  CHECK(ParseVolumePath("beam.nxs").hdf5);
  CHECK(ParseVolumePath("beam.nxs").dataset.empty());
  const VolumePath tif = ParseVolumePath("/a:/b.tif");  // not an HDF5 name: the whole path
  CHECK_FALSE(tif.hdf5);
  CHECK(tif.file == "/a:/b.tif");
}

TEST_CASE("HDF5 volumes and series round-trip, read by ranges of slices", "[hdf5]") {
  TempDir dir;
  const Volume v = Ramp<uint16_t>({12, 9, 7, 1}, DType::kUInt16);  // 3 time points of 4 slices
  Hdf5WriteOptions o;
  o.frames = 3;
  {
    auto w = Hdf5Writer::Open(ParseVolumePath(dir / "s.h5:/group/series"), v.shape(), v.dtype(), o).value();
    REQUIRE(w->Append(ExtractSlab(v, SlabRange{0, 5, 0, 0}).value()).ok());  // crosses a time point
    REQUIRE(w->Append(ExtractSlab(v, SlabRange{5, 12, 0, 0}).value()).ok());
    CHECK_FALSE(std::filesystem::exists(dir / "s.h5"));  // appears when closed
    REQUIRE(w->Close().ok());
  }
  auto r = Hdf5Reader::Open(ParseVolumePath(dir / "s.h5:/group/series")).value();
  CHECK(r->info().shape == v.shape());
  CHECK(r->info().frames == 3);
  CHECK(r->info().axes == "TZYX");
  CHECK(r->info().note.empty());
  CHECK(r->ReadSlices(0, -1).value() == v);
  CHECK(r->ReadSlices(3, 9).value() == ExtractSlab(v, SlabRange{3, 9, 0, 0}).value());
  CHECK(r->ReadSlices(11, 13).status().code() == StatusCode::kOutOfRange);
  // h5py and ilastik see a T x Z x Y x X dataset with its axes.
  const std::string seen = Python("f = h5py.File(\"" + dir / "s.h5" + "\", \"r\"); d = f[\"group/series\"]\n"
                                  "print(d.shape, d.dtype, d.attrs[\"axes\"], [a[\"key\"] for a in json.loads(d.attrs[\"axistags\"])[\"axes\"]], "
                                  "int(d[2, 1, 5, 3]), d.compression)");
  CHECK_THAT(seen, Catch::Contains("(3, 4, 9, 7) uint16 TZYX [\x27t\x27, \x27z\x27, \x27y\x27, \x27x\x27] " +
                                   std::to_string(v.at<uint16_t>(2 * 4 + 1, 5, 3)) + " gzip"));
  // Through TIFF and back, streamed: the same slices, time points kept.
  REQUIRE(ConvertHdf5ToTiff(ParseVolumePath(dir / "s.h5:/group/series"), dir / "s.tif").ok());
  CHECK(ProbeTiff(dir / "s.tif").value().frames == 3);
  CHECK(ReadTiff(dir / "s.tif").value() == v);
  REQUIRE(ConvertTiffToHdf5(dir / "s.tif", ParseVolumePath(dir / "back.h5:/v")).ok());
  CHECK(Hdf5Reader::Open(ParseVolumePath(dir / "back.h5:/v")).value()->ReadSlices(0, -1).value() == v);
  CHECK(Hdf5Reader::Open(ParseVolumePath(dir / "back.h5:/v")).value()->info().frames == 3);
}

TEST_CASE("datasets written by h5py and ilastik open the way their writers meant them", "[hdf5]") {
  TempDir dir;
  const std::string d = dir.path();
  Python("a = (np.arange(6 * 20 * 24) % 251).astype(np.uint16).reshape(6, 20, 24)\n"
         "with h5py.File(\"" + d + "/h5py.h5\", \"w\") as f:\n"
         "  f.create_dataset(\"raw\", data=a, chunks=(2, 10, 12), compression=\"gzip\")\n"
         "  f.create_dataset(\"series\", data=np.stack([a, a + 1, a + 2]).astype(np.uint8))\n"
         "  f.create_dataset(\"rgb\", data=np.zeros((6, 20, 24, 3), np.uint8))\n"
         "  f.create_dataset(\"signed\", data=(a.astype(np.int16) - 100))\n"
         "  f.create_dataset(\"double\", data=a.astype(np.float64) / 7)\n"
         "  f.create_dataset(\"names\", data=np.array([b\"a\", b\"b\"]))\n"
         "  f.create_dataset(\"flat\", data=a[0])\n"
         "  f.create_group(\"group\")\n"
         "  x = f.create_dataset(\"ilastik\", data=a.reshape(1, 6, 20, 24, 1))\n"
         "  x.attrs[\"axistags\"] = json.dumps({\"axes\": [{\"key\": k, \"typeFlags\": 2, \"resolution\": 0, "
         "\"description\": \"\"} for k in \"tzyxc\"]})\n"
         "  y = f.create_dataset(\"transposed\", data=a.T)\n"
         "  y.attrs[\"axes\"] = \"XYZ\"\n"
         "with h5py.File(\"" + d + "/one.h5\", \"w\") as f:\n"
         "  f.create_dataset(\"entry/data/data\", data=a)\n"
         "  f.attrs[\"note\"] = \"one image\"\n");
  auto open = [&](const std::string& spec) { return Hdf5Reader::Open(ParseVolumePath(d + "/" + spec)); };
  auto raw = open("h5py.h5:/raw").value();
  CHECK(raw->info().shape == VolumeShape{6, 20, 24, 1});
  CHECK(raw->info().dtype == DType::kUInt16);
  CHECK(raw->info().chunk_slices == 2);
  const Volume all = raw->ReadSlices(0, -1).value();
  CHECK(all.at<uint16_t>(4, 7, 9) == (4 * 480 + 7 * 24 + 9) % 251);
  CHECK(raw->ReadSlices(3, 5).value() == ExtractSlab(all, SlabRange{3, 5, 0, 0}).value());
  // A 4D array without axes: time points, said so.
  auto series = open("h5py.h5:/series").value();
  CHECK(series->info().shape == VolumeShape{18, 20, 24, 1});
  CHECK(series->info().frames == 3);
  CHECK_THAT(series->info().note, Catch::Contains("read as 3 time points"));
  CHECK(series->ReadSlices(13, 14).value().at<uint8_t>(0, 7, 9) == static_cast<uint8_t>(all.at<uint16_t>(1, 7, 9) + 2));
  auto rgb = open("h5py.h5:/rgb").value();
  CHECK(rgb->info().shape == VolumeShape{6, 20, 24, 3});
  CHECK_THAT(rgb->info().note, Catch::Contains("3 channels"));
  // Other numeric types become float32, with a note.
  auto sgn = open("h5py.h5:/signed").value();
  CHECK(sgn->info().dtype == DType::kFloat32);
  CHECK_THAT(sgn->info().note, Catch::Contains("int16 samples read as float32"));
  CHECK(sgn->ReadSlices(4, 5).value().at<float>(0, 7, 9) == static_cast<float>(all.at<uint16_t>(4, 7, 9)) - 100.0f);
  CHECK(open("h5py.h5:/double").value()->ReadSlices(1, 2).value().at<float>(0, 0, 1) ==
        static_cast<float>(static_cast<double>(all.at<uint16_t>(1, 0, 1)) / 7));
  CHECK(open("h5py.h5:/flat").value()->info().shape == VolumeShape{1, 20, 24, 1});
  // ilastik's axistags (t, z, y, x, c of one each): a plain volume.
  auto ilastik = open("h5py.h5:/ilastik").value();
  CHECK(ilastik->info().shape == VolumeShape{6, 20, 24, 1});
  CHECK(ilastik->info().axes == "TZYXC");
  CHECK(ilastik->ReadSlices(0, -1).value() == all);
  // The only image dataset of a file needs no name.
  auto one = Hdf5Reader::Open(ParseVolumePath(d + "/one.h5")).value();
  CHECK(one->info().dataset == "/entry/data/data");
  // Bad names and contents: clear errors naming the file and the dataset.
  auto message = [&](const std::string& spec) { return open(spec).status().ToString(); };
  CHECK_THAT(message("h5py.h5:/nope/data"), Catch::Contains("h5py.h5") && Catch::Contains("dataset /nope/data does not exist (no /nope)"));
  CHECK_THAT(message("h5py.h5:/group"), Catch::Contains("/group is a group, not a dataset"));
  CHECK_THAT(message("h5py.h5:/names"), Catch::Contains("h5py.h5:/names") && Catch::Contains("holds strings, not image samples"));
  CHECK_THAT(message("h5py.h5:/transposed"), Catch::Contains("its axes are \"XYZ\""));
  CHECK_THAT(message("h5py.h5"), Catch::Contains("name a dataset, e.g. file.h5:/") && Catch::Contains("/raw"));
  CHECK_THAT(message("absent.h5:/x"), Catch::Contains("absent.h5: no such file"));
  testing::Spit(d + "/fake.h5", "not HDF5 at all, just text");
  CHECK_THAT(message("fake.h5:/x"), Catch::Contains("fake.h5 is not an HDF5 file"));
  // A truncated file: an error, never a crash or a short volume.
  const std::string bytes = testing::Slurp(d + "/h5py.h5");
  testing::Spit(d + "/cut.h5", bytes.substr(0, bytes.size() / 2));
  StatusOr<std::unique_ptr<Hdf5Reader>> cut = open("cut.h5:/raw");
  if (cut.ok()) CHECK_FALSE((*cut)->ReadSlices(0, -1).ok());
  // Written datasets need a name; an existing file is replaced only when the new one is whole.
  CHECK_THAT(Hdf5Writer::Open(ParseVolumePath(d + "/out.h5"), {2, 4, 4, 1}, DType::kUInt8).status().message(),
             Catch::Contains("name the dataset to write"));
}

TEST_CASE("HDF5 file images in memory are read the same, and garbage is an error", "[hdf5]") {
  TempDir dir;
  const Volume v = Ramp<uint8_t>({3, 8, 8, 1}, DType::kUInt8);
  auto w = Hdf5Writer::Open(ParseVolumePath(dir / "m.h5:/v"), v.shape(), v.dtype()).value();
  REQUIRE(w->Append(v).ok());
  REQUIRE(w->Close().ok());
  const std::string bytes = testing::Slurp(dir / "m.h5");
  CHECK(Hdf5Reader::OpenMemory(bytes, "/v").value()->ReadSlices(0, -1).value() == v);
  CHECK_FALSE(Hdf5Reader::OpenMemory("garbage garbage garbage", "/v").ok());
  std::string flipped = bytes;
  for (size_t i = 600; i < flipped.size(); i += 97) flipped[i] = static_cast<char>(flipped[i] ^ 0x5a);
  StatusOr<std::unique_ptr<Hdf5Reader>> r = Hdf5Reader::OpenMemory(flipped, "/v");
  if (r.ok()) (void)(*r)->ReadSlices(0, -1);  // may read or fail; must not crash
}

}  // namespace
}  // namespace idlegrid
