// The wx wizard under Xvfb: a whole session replayed through its pages (the handlers the
// mouse and buttons call) against a real private grid, with a screenshot of each step
// checked for size, content and the classes' overlay colours.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "child_process.h"
#include "idlegrid/client/annotation.h"
#include "idlegrid/models/model.h"
#include "idlegrid/shared/hdf5_io.h"
#include "idlegrid/shared/tiff_io.h"
#include "models/model_fixtures.h"
#include "test_util.h"
#include "wizard_fixtures.h"

namespace idlegrid::client {
namespace {

// Pixels showing class colour `rgb` blended at `alpha` over some gray: p = (1-a) g + a c.
int64_t OverlayPixels(const testing::Bmp& shot, uint32_t rgb, double alpha) {
  const double c[3] = {double(rgb >> 16 & 0xFF), double(rgb >> 8 & 0xFF), double(rgb & 0xFF)};
  int64_t n = 0;
  for (size_t i = 0; i + 2 < shot.rgb.size(); i += 3) {
    double g[3];
    for (int k = 0; k < 3; ++k) g[k] = (shot.rgb[i + k] - alpha * c[k]) / (1 - alpha);
    const double lo = std::min({g[0], g[1], g[2]}), hi = std::max({g[0], g[1], g[2]});
    const int spread = std::max({shot.rgb[i], shot.rgb[i + 1], shot.rgb[i + 2]}) -
                       std::min({shot.rgb[i], shot.rgb[i + 1], shot.rgb[i + 2]});
    n += hi - lo <= 4 && lo >= -2 && hi <= 257 && spread > 24;
  }
  return n;
}

int64_t Distinct(const testing::Bmp& shot) {
  std::set<uint32_t> colours;
  for (size_t i = 0; i + 2 < shot.rgb.size(); i += 3) {
    colours.insert(shot.rgb[i] << 16 | shot.rgb[i + 1] << 8 | shot.rgb[i + 2]);
  }
  return static_cast<int64_t>(colours.size());
}

TEST_CASE("the wx wizard replays a session through its pages under Xvfb", "[client][wizard][gui]") {
  const std::string bin = IDLEGRID_BIN_DIR;
  if (::access("/usr/bin/Xvfb", X_OK) != 0) {
    FAIL("needs Xvfb (scripts/packages.txt installs it)");
  }
  testing::TempDir dir;
  const MaterialsSample& sample = testing::SmallSample();
  const std::string z = testing::WriteSampleFiles(dir);
  REQUIRE(!z.empty());
  testing::Spit(dir / "gui.script",
                "{\"shot\": \"start\"}\n" + testing::ScriptOpening(dir, z) +
                "{\"stroke\": {\"slice\": " + z + ", \"class\": 2, \"radius\": 4, \"path\": [[20, 20], [60, 40], [100, 30]]}}\n"
                "{\"shot\": \"paint\"}\n"
                "{\"train\": {}}\n"
                "{\"shot\": \"compare\"}\n"
                "{\"page\": \"train\"}\n{\"shot\": \"train\"}\n"
                "{\"reopen\": 1}\n"  // the session as after a night away: back to the candidates"
                "{\"pick\": \"best\"}\n"
                "{\"uncertain\": {}}\n{\"shot\": \"uncertain\"}\n"
                "{\"correct_from\": {\"file\": \"" + dir / "truth.tif" + "\", \"slice\": " + z + ", \"step\": 6}}\n"
                "{\"shot\": \"correct\"}\n"
                "{\"retrain\": {}}\n"
                "{\"apply\": {}}\n"
                "{\"reopen\": 1}\n"  // continued while correcting, its last job the segmentation: shown again
                "{\"shot\": \"apply\"}\n"
                "{\"export\": {\"labels\": \"" + dir / "out.tif" + "\", \"model\": \"" + dir / "model.pt" + "\"}}\n"
                "{\"denoise\": {}}\n"
                "{\"shot\": \"denoise\"}\n");
  testing::VirtualDisplay x(1300, "1280x1024");
  const std::string& display = x.display;
  int rc = -1;
  const std::string out = testing::RunCommand(
      "DISPLAY=" + display + " IDLEGRID_CONFIG_DIR=" + dir / "config" + " timeout 900 " + bin +
          "/idlegrid-wizard --gui --script " + dir / "gui.script" + " --shots " + dir / "shots" + " --session " +
          dir / "session" + " --nodes 2 --max-steps 6 2>&1",
      &rc);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK(ReadTiff(dir / "out.tif").value().shape() == sample.image.shape());
  CHECK(models::Model::Load(dir / "model.pt").ok());

  std::map<std::string, testing::Bmp> shots;
  for (const char* name : {"start", "paint", "compare", "train", "correct", "apply", "denoise"}) {
    shots[name] = testing::ReadBmp(dir / ("shots/" + std::string(name) + ".bmp"));
    INFO(name);
    CHECK(shots[name].width == 1100);  // the window's client area
    CHECK(shots[name].height > 650);
    CHECK(Distinct(shots[name]) > (std::string(name) == "start" || std::string(name) == "train" ? 20 : 60));
    CHECK(std::filesystem::file_size(dir / ("shots/" + std::string(name) + ".png")) > 5000);
  }
  // The classes' colours over the slice where they were painted; predictions (of briefly
  // trained models: which classes they find varies) in the classes' colours.
  int64_t compare = 0, apply = 0;
  for (uint8_t v = 1; v <= 3; ++v) {
    INFO("class " << int(v));
    CHECK(OverlayPixels(shots["paint"], Annotation::DefaultColour(v), 0.5) > 30);
    compare += OverlayPixels(shots["compare"], Annotation::DefaultColour(v), 0.5);
    apply += OverlayPixels(shots["apply"], Annotation::DefaultColour(v), 0.5);
  }
  CHECK(compare > 20000);  // four panels of a 64 x 64 slice, zoomed
  CHECK(apply > 20000);
  CHECK(OverlayPixels(shots["start"], Annotation::DefaultColour(1), 0.5) < 50);
  // Where to correct: the most uncertain slice, its unsure voxels marked in magenta.
  shots["uncertain"] = testing::ReadBmp(dir / "shots/uncertain.bmp");
  CHECK(OverlayPixels(shots["uncertain"], 0xFF00FF, 0.35) > 20);
  CHECK(OverlayPixels(shots["correct"], 0xFF00FF, 0.35) <= OverlayPixels(shots["uncertain"], 0xFF00FF, 0.35));
  // The denoise page shows slices without an overlay.
  CHECK(OverlayPixels(shots["denoise"], Annotation::DefaultColour(2), 0.5) < 50);
}

TEST_CASE("the wx wizard says what went wrong and keeps going or stops cleanly", "[client][wizard][gui]") {
  const std::string bin = IDLEGRID_BIN_DIR;
  if (::access("/usr/bin/Xvfb", X_OK) != 0) {
    FAIL("needs Xvfb (scripts/packages.txt installs it)");
  }
  testing::TempDir dir;
  testing::VirtualDisplay x(1600, "1280x1024");
  const std::string& display = x.display;
  const std::string env = "DISPLAY=" + display + " IDLEGRID_CONFIG_DIR=" + dir / "config" + " timeout 120 " + bin + "/idlegrid-wizard --gui ";
  // A file that is not a volume: the message names it; a replay stops there (exit 1).
  testing::Spit(dir / "notes.tif", "not an image");
  testing::Spit(dir / "open.script", "{\"open\": \"" + dir / "notes.tif" + "\"}\n");
  int rc = -1;
  std::string out = testing::RunCommand(env + "--script " + dir / "open.script" + " --session " + dir / "s1" + " --nodes 0 2>&1", &rc);
  CHECK(rc == 1);
  CHECK_THAT(out, Catch::Contains("open.script:1") && Catch::Contains("notes.tif is not a volume"));
  // A grid nobody answers: "cannot reach the grid" with the address.
  testing::Spit(dir / "shot.script", "{\"shot\": \"start\"}\n");
  out = testing::RunCommand(env + "--script " + dir / "shot.script" + " --session " + dir / "s2" +
                                " --server https://127.0.0.1:1 --token x --fingerprint " + std::string(64, 'a') + " 2>&1",
                            &rc);
  CHECK(rc == 1);
  CHECK_THAT(out, Catch::Contains("Cannot reach the grid") && Catch::Contains("127.0.0.1:1"));

  // An HDF5 dataset is converted on the task thread (the window stays live) and opens as its
  // stack; the staged copy becomes the session's image.
  const Volume& volume = testing::SmallSample().image;
  {
    auto h5 = Hdf5Writer::Open(ParseVolumePath(dir / "scan.h5:/entry/raw"), volume.shape(), volume.dtype()).value();
    REQUIRE(h5->Append(volume).ok());
    REQUIRE(h5->Close().ok());
  }
  testing::Spit(dir / "h5.script", "{\"open\": \"" + dir / "scan.h5:/entry/raw" + "\"}\n{\"class\": \"pores\"}\n");
  out = testing::RunCommand(env + "--script " + dir / "h5.script" + " --session " + dir / "s3" + " --nodes 0 2>&1", &rc);
  CHECK(rc == 0);
  INFO(out);
  CHECK(ReadTiff(dir / "s3/image.tif").value() == volume);
  CHECK_FALSE(std::filesystem::exists(dir / "s3/image.tif.staged"));
}

}  // namespace
}  // namespace idlegrid::client
