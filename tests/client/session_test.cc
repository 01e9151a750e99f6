// Wizard sessions on disk: saved and reopened whole; damage reported.
#include <catch2/catch.hpp>

#include <cstring>

#include "idlegrid/client/session.h"
#include "test_util.h"

namespace idlegrid::client {
namespace {

TEST_CASE("a session and its labels are saved and reopened whole", "[client][session]") {
  testing::TempDir dir;
  Annotation a({4, 32, 32, 1});
  const uint8_t c1 = a.AddClass("matrix", 0x808080).value();
  const uint8_t c2 = a.AddClass("pore").value();
  a.Stroke(2, {{5, 5}, {25, 20}}, 2, c1).value();
  a.Stroke(2, {{16, 3}}, 3, c2).value();
  Session s;
  s.image_path = "/data/ct.tif";
  s.local_grid = false;
  s.server = "https://grid:8443";
  s.fingerprint = "ab12";
  s.jobs = {{"j1", "candidates"}, {"j2", "apply"}};
  s.chosen_model = std::string(64, 'f');
  s.painting_seconds = 271.5;
  s.slice = 2;
  REQUIRE(SaveSession(dir.path(), s, a).ok());
  LoadedSession back = LoadSession(dir.path()).value();
  CHECK(back.session.ToJson() == s.ToJson());
  CHECK(back.annotation.counts() == a.counts());
  CHECK(std::memcmp(back.annotation.labels().bytes(), a.labels().bytes(), a.labels().size_bytes()) == 0);
  REQUIRE(back.annotation.classes().size() == 2);
  CHECK(back.annotation.classes()[0].name == "matrix");
  CHECK(back.annotation.classes()[0].rgb == 0x808080);
  // Damage is reported, not crashed on.
  testing::Spit(dir / "session.json", "{\"schema\": 1, ");
  CHECK(LoadSession(dir.path()).status().code() == StatusCode::kDataLoss);
  CHECK(LoadSession(dir / "nothing").status().code() == StatusCode::kNotFound);
}

}  // namespace
}  // namespace idlegrid::client
