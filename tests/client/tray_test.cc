// The tray: its display-free model, and the real wx app under Xvfb with a tray host
// (trayer) showing a real node's state.
#include <catch2/catch.hpp>

#include <fstream>
#include <set>
#include <thread>

#include "child_process.h"
#include "idlegrid/client/tray_model.h"
#include "test_util.h"

namespace idlegrid::client {
namespace {

TEST_CASE("the tray shows what the node reports", "[client][tray]") {
  TrayView off = ViewOf(UnavailableError("no node daemon at /run/x.sock"));
  CHECK(off.state == TrayState::kOffline);
  CHECK_THAT(off.tooltip, Catch::Contains("not running"));

  Json s{{"state", "working"}, {"kind", "train_epochs"}, {"progress", 0.42}, {"unit_id", "j1-c0-e0"},
         {"job_id", "j1"}, {"epoch", 3}, {"units_done", 5}, {"paused", false}, {"last_error", ""}};
  TrayView w = ViewOf(s);
  CHECK(w.state == TrayState::kWorking);
  CHECK(w.headline == "Computing train_epochs: 42%");
  CHECK(w.pause_label == "Pause");
  CHECK(w.progress == Approx(0.42));
  bool saw_unit = false;
  for (const auto& [k, v] : w.details) saw_unit |= k == "Unit" && v == "j1-c0-e0";
  CHECK(saw_unit);

  s["paused"] = true;
  s["state"] = "paused";
  TrayView p = ViewOf(s);
  CHECK(p.state == TrayState::kPaused);
  CHECK(p.pause_label == "Resume");
  s["paused"] = false;
  s["state"] = "suspended";
  CHECK(ViewOf(s).state == TrayState::kPaused);
  CHECK_THAT(ViewOf(s).headline, Catch::Contains("Suspended"));
  s["state"] = "idle";
  CHECK(ViewOf(s).state == TrayState::kIdle);
  s["state"] = "stopped";
  s["last_error"] = "lease: wrong secret";
  CHECK(ViewOf(s).state == TrayState::kError);
  CHECK_THAT(ViewOf(s).headline, Catch::Contains("wrong secret"));
}

TEST_CASE("the tray app under Xvfb with a system tray shows a node's state", "[client][tray][gui]") {
  const std::string bin = IDLEGRID_BIN_DIR;
  if (::access("/usr/bin/Xvfb", X_OK) != 0 || ::access("/usr/bin/trayer", X_OK) != 0 ||
      ::access((bin + "/idlegrid-tray").c_str(), X_OK) != 0) {
    FAIL("needs Xvfb, trayer and idlegrid-tray (scripts/packages.txt installs them)");
  }
  testing::TempDir dir;
  testing::VirtualDisplay x(1000, "800x600");
  const std::string& display = x.display;
  testing::ChildProcess tray_host({"/usr/bin/env", "DISPLAY=" + display, "/usr/bin/trayer", "--edge", "top",
                                   "--align", "right", "--widthtype", "request", "--height", "24"});
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  // No daemon here: the tray must say so (offline) rather than fail. The node's live states
  // are covered by the model test above and by the node tests' status socket.
  int rc = -1;
  const std::string out = testing::RunCommand(
      "DISPLAY=" + display + " IDLEGRID_CONFIG_DIR=" + dir / "config" + " IDLEGRID_CACHE_DIR=" + dir / "cache" +
          " timeout 60 " + bin + "/idlegrid-tray --no-start --screenshot " + dir / "tray.bmp 2>&1",
      &rc);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("system tray available: yes"));
  CHECK_THAT(out, Catch::Contains("state offline") && Catch::Contains("saved (460x360)"));
  const testing::Bmp shot = testing::ReadBmp(dir / "tray.bmp");
  REQUIRE(shot.width == 460);
  REQUIRE(shot.height == 360);
  std::set<uint32_t> colours;
  bool gray_icon = false;
  for (size_t i = 0; i + 2 < shot.rgb.size(); i += 3) {
    const uint32_t c = shot.rgb[i] << 16 | shot.rgb[i + 1] << 8 | shot.rgb[i + 2];
    colours.insert(c);
    gray_icon |= c == (150u << 16 | 150u << 8 | 150u);  // the offline icon
  }
  CHECK(colours.size() > 20);  // text, icon and widgets: not a blank window
  CHECK(gray_icon);
  CHECK(std::filesystem::file_size(dir / "tray.bmp.screen.png") > 1000);
}

}  // namespace
}  // namespace idlegrid::client
