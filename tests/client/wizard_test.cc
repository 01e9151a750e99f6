// The wizard's whole flow through its display-free core, against a real private grid (server
// + node process + worker): open, paint, train candidates, compare, choose, correct,
// retrain from the chosen model, apply, export; and reopen the session afterwards.
#include <catch2/catch.hpp>

#include "idlegrid/client/wizard.h"
#include "idlegrid/models/model.h"
#include "idlegrid/shared/tiff_io.h"
#include "models/model_fixtures.h"
#include "test_util.h"

namespace idlegrid::client {
namespace {

// Replays labels as a user would paint them: each run of equal labels along a row is one
// stroke with a one-pixel brush.
void PaintLike(Annotation& a, const Volume& labels, int64_t z, int64_t max_pixels = 1 << 30) {
  const VolumeShape& s = labels.shape();
  int64_t painted = 0;
  for (int64_t y = 0; y < s.y && painted < max_pixels; ++y) {
    for (int64_t x = 0; x < s.x;) {
      const uint8_t v = labels.data<uint8_t>()[labels.Index(z, y, x)];
      int64_t end = x + 1;
      while (end < s.x && labels.data<uint8_t>()[labels.Index(z, y, end)] == v) ++end;
      if (v != 0) {
        REQUIRE(a.Stroke(z, {{static_cast<double>(x), static_cast<double>(y)},
                             {static_cast<double>(end - 1), static_cast<double>(y)}}, 0.5, v).ok());
        painted += end - x;
      }
      x = end;
    }
  }
}

TEST_CASE("the wizard's flow from a volume to an exported segmentation", "[client][wizard]") {
  testing::TempDir dir;
  const MaterialsSample& sample = testing::SmallSample();
  REQUIRE(WriteTiff(dir / "volume.tif", sample.image).ok());
  WizardOptions o;
  o.session_dir = dir / "session";
  o.bin = IDLEGRID_BIN_DIR;
  o.local_nodes = 2;
  o.max_steps_per_candidate = 6;
  auto w = Wizard::Create(o).value();

  // 1-2. Open and paint, as the user would: three classes, strokes on one slice.
  REQUIRE(w->Open(dir / "volume.tif").ok());
  for (const char* name : {"matrix", "pore", "inclusion"}) REQUIRE(w->annotation().AddClass(name).ok());
  PaintLike(w->annotation(), sample.scribbles, sample.label_slice);
  const int64_t first_labels = w->annotation().labelled();
  CHECK(first_labels > 1000);

  // 3. Candidates with no parameters.
  const std::string job = w->TrainCandidates().value();
  int updates = 0;
  REQUIRE(w->Wait(job, 600, [&](const Json&) { ++updates; }).ok());
  CHECK(updates > 0);
  std::vector<Candidate> candidates = w->Candidates().value();
  REQUIRE(candidates.size() >= 4);
  for (size_t i = 1; i < candidates.size(); ++i) CHECK(candidates[i - 1].score >= candidates[i].score);

  // 4. Compare on the painted slice; choose the best.
  const int64_t z = sample.label_slice;
  Volume best = w->Predict(candidates[0].model, z, z + 1).value();
  REQUIRE(best.shape().z == 1);
  CHECK(best.shape().y == sample.image.shape().y);
  REQUIRE(w->Choose(candidates[0]).ok());

  // 5. Correct: accept the prediction where it is right, paint the truth where it is wrong
  // (here the ground truth plays the user's eye).
  const VolumeShape& s = sample.truth.shape();
  std::vector<uint8_t> prediction(best.bytes(), best.bytes() + best.size_bytes());
  for (int64_t y = 0; y < s.y; y += 4) {
    for (int64_t x = 0; x < s.x; x += 4) {
      const uint8_t truth = sample.truth.data<uint8_t>()[sample.truth.Index(z, y, x)];
      if (prediction[static_cast<size_t>(y * s.x + x)] == truth) {
        REQUIRE(w->annotation().Accept(z, {{double(x), double(y)}}, 1.5, prediction.data()).ok());
      } else {
        REQUIRE(w->annotation().Stroke(z, {{double(x), double(y)}}, 1.5, truth).ok());
      }
    }
  }
  CHECK(w->annotation().labelled() > first_labels);
  const std::string chosen_before = w->session().chosen_model;
  REQUIRE(w->Retrain(600).ok());
  CHECK(w->session().chosen_model != chosen_before);  // the fine-tuned model is now chosen

  // 6. Apply to the whole volume and export.
  const std::string apply = w->Apply().value();
  REQUIRE(w->Wait(apply, 600).ok());
  REQUIRE(w->Export(apply, dir / "labels.tif", dir / "model.pt").ok());
  const Volume labels = ReadTiff(dir / "labels.tif").value();
  CHECK(labels.shape() == sample.image.shape());
  auto model = models::Model::Load(dir / "model.pt");
  REQUIRE(model.ok());
  CHECK((*model)->config().num_classes == 3);

  // 8. The session reopens with everything: labels, classes, jobs, the chosen model.
  const std::vector<int64_t> counts = w->annotation().counts();
  const Json session = w->session().ToJson();
  w.reset();
  o.local_nodes = 0;
  auto again = Wizard::Create(o).value();
  REQUIRE(again->Reopen().ok());
  CHECK(again->annotation().counts() == counts);
  CHECK(again->annotation().classes()[1].name == "pore");
  CHECK(again->session().ToJson() == session);
}

TEST_CASE("idlegrid-wizard replays a scripted session", "[client][wizard]") {
  testing::TempDir dir;
  const MaterialsSample& sample = testing::SmallSample();
  REQUIRE(WriteTiff(dir / "volume.tif", sample.image).ok());
  REQUIRE(WriteTiff(dir / "scribbles.tif", sample.scribbles).ok());
  REQUIRE(WriteTiff(dir / "truth.tif", sample.truth).ok());
  const std::string z = std::to_string(sample.label_slice);
  testing::Spit(dir / "session.script",
                "# a user's session, replayed\n"
                "{\"open\": \"" + dir / "volume.tif" + "\"}\n"
                "{\"class\": \"matrix\"}\n{\"class\": \"pore\"}\n{\"class\": \"inclusion\"}\n"
                "{\"paint_labels\": {\"file\": \"" + dir / "scribbles.tif" + "\", \"slice\": " + z + "}}\n"
                "{\"stroke\": {\"slice\": 0, \"class\": 2, \"radius\": 2, \"path\": [[3, 3], [9, 9]]}}\n"
                "{\"undo\": 1}\n"
                "{\"train\": {}}\n"
                "{\"compare\": {\"slice\": " + z + ", \"png\": \"" + dir / "compare.png" + "\"}}\n"
                "{\"pick\": \"best\"}\n"
                "{\"correct_from\": {\"file\": \"" + dir / "truth.tif" + "\", \"slice\": " + z + ", \"step\": 6}}\n"
                "{\"retrain\": {}}\n"
                "{\"apply\": {}}\n"
                "{\"export\": {\"labels\": \"" + dir / "out.tif" + "\", \"model\": \"" + dir / "model.pt" + "\"}}\n");
  int rc = -1;
  const std::string out = testing::RunCommand(std::string(IDLEGRID_BIN_DIR) + "/idlegrid-wizard --script " +
                                                  dir / "session.script" + " --session " + dir / "session" +
                                                  " --nodes 2 --max-steps 6 2>&1",
                                              &rc);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains("chose") && Catch::Contains("corrected"));
  CHECK(ReadTiff(dir / "out.tif").value().shape() == sample.image.shape());
  CHECK(testing::Slurp(dir / "compare.png").substr(1, 3) == "PNG");
  CHECK(models::Model::Load(dir / "model.pt").ok());
  // A bad line stops the replay with the line number, and the painted labels are saved.
  testing::Spit(dir / "bad.script", "{\"open\": \"" + dir / "volume.tif" + "\"}\n{\"class\": \"a\"}\n{\"fly\": 1}\n");
  const std::string err = testing::RunCommand(std::string(IDLEGRID_BIN_DIR) + "/idlegrid-wizard --script " +
                                                  dir / "bad.script" + " --session " + dir / "s2" + " --nodes 0 2>&1",
                                              &rc);
  CHECK(rc == 1);
  CHECK_THAT(err, Catch::Contains("bad.script:3: unknown command"));
  CHECK(std::filesystem::exists(dir / "s2/labels.tif"));
}

}  // namespace
}  // namespace idlegrid::client
