// The node's policy pieces without a server: time windows, policy JSON, idle sources.
#include <catch2/catch.hpp>

#include <thread>

#include "child_process.h"
#include "idlegrid/client/idle.h"
#include "idlegrid/client/node.h"
#include "test_util.h"

namespace idlegrid::client {
namespace {

TEST_CASE("time windows, including ones that wrap past midnight", "[client][policy]") {
  CHECK(InWindow("09:00-17:30", 9 * 60).value());
  CHECK(InWindow("09:00-17:30", 17 * 60 + 29).value());
  CHECK_FALSE(InWindow("09:00-17:30", 17 * 60 + 30).value());
  CHECK_FALSE(InWindow("09:00-17:30", 8 * 60 + 59).value());
  CHECK(InWindow("18:00-08:00", 23 * 60).value());
  CHECK(InWindow("18:00-08:00", 3 * 60).value());
  CHECK_FALSE(InWindow("18:00-08:00", 12 * 60).value());
  CHECK(InWindow("00:00-00:00", 700).value());  // all day
  for (const char* bad : {"9-17", "25:00-01:00", "09:61-10:00", "09:00-10:00x", ""}) {
    CHECK(InWindow(bad, 0).status().code() == StatusCode::kInvalidArgument);
  }
}

TEST_CASE("the policy round-trips through JSON and refuses nonsense", "[client][policy]") {
  NodePolicy p;
  p.mode = NodePolicy::Mode::kWindows;
  p.windows = {"18:00-08:00"};
  p.max_threads = 6;
  p.use_gpu = false;
  NodePolicy q = NodePolicy::FromJson(p.ToJson()).value();
  CHECK(q.ToJson() == p.ToJson());
  CHECK_FALSE(NodePolicy::FromJson(Json{{"mode", "sometimes"}}).ok());
  CHECK_FALSE(NodePolicy::FromJson(Json{{"windows", {"whenever"}}}).ok());
  CHECK_FALSE(NodePolicy::FromJson(Json{{"max_threads", -1}}).ok());
  CHECK_FALSE(NodePolicy::FromJson(Json{{"colour", "blue"}}).ok());
}

TEST_CASE("a file idle source reads active, idle or milliseconds", "[client][policy]") {
  testing::TempDir dir;
  auto src = MakeFileIdleSource(dir / "idle");
  CHECK_FALSE(src->IdleMs().has_value());  // no file: cannot tell
  testing::Spit(dir / "idle", "active\n");
  CHECK(src->IdleMs() == 0);
  testing::Spit(dir / "idle", "12345");
  CHECK(src->IdleMs() == 12345);
  testing::Spit(dir / "idle", "-5");
  CHECK_FALSE(src->IdleMs().has_value());
}

TEST_CASE("the X11 idle source reads the XScreenSaver extension", "[client][policy][gui]") {
  if (::access("/usr/bin/Xvfb", X_OK) != 0) {
    FAIL("needs Xvfb (scripts/packages.txt installs it)");
  }
  const std::string display = ":" + std::to_string(300 + ::getpid() % 200);
  testing::ChildProcess xvfb({"/usr/bin/Xvfb", display, "-screen", "0", "320x240x24", "-nolisten", "tcp"});
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  ::setenv("DISPLAY", display.c_str(), 1);
  auto src = MakeX11IdleSource();
  ::unsetenv("DISPLAY");
  REQUIRE(src != nullptr);
  CHECK(src->name() == "x11");
  const std::optional<int64_t> first = src->IdleMs();
  REQUIRE(first.has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  const std::optional<int64_t> later = src->IdleMs();
  REQUIRE(later.has_value());
  CHECK(*later >= *first + 400);  // nobody touches a virtual display
  // Without a display there is no X11 source (the daemon falls back to /dev/input).
  CHECK(MakeX11IdleSource() == nullptr);
}

}  // namespace
}  // namespace idlegrid::client
