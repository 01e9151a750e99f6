// The wizard's whole flow through its display-free core, against a real private grid (server
// + node process + worker): open, paint, train candidates, compare, choose, correct,
// retrain from the chosen model, apply, export; and reopen the session afterwards.
#include <signal.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "child_process.h"
#include "idlegrid/client/wizard.h"
#include "idlegrid/models/model.h"
#include "idlegrid/models/strategy.h"
#include "idlegrid/server/server.h"
#include "idlegrid/shared/hdf5_io.h"
#include "idlegrid/shared/tiff_io.h"
#include "models/model_fixtures.h"
#include "test_util.h"
#include "wizard_fixtures.h"

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
  // What the uploads report (on the transferring thread).
  std::mutex said_mu;
  std::map<std::string, std::pair<int64_t, int64_t>> said;  // what -> last (done, total)
  o.on_transfer = [&](const std::string& what, int64_t done, int64_t total) {
    std::lock_guard<std::mutex> lock(said_mu);
    said[what] = {done, total};
  };
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
  // Ranked by validation, candidates within 0.02 of the best by their agreement on the
  // reviewed slices; each says why.
  double top = -1;
  for (const Candidate& c : candidates) top = std::max(top, c.score);
  CHECK(candidates[0].score >= top - 0.02);
  for (size_t i = 0; i < candidates.size(); ++i) {
    CHECK(candidates[i].agreement >= 0);
    CHECK_FALSE(candidates[i].why.empty());
    if (i == 0) continue;
    const bool tied = candidates[i - 1].score >= top - 0.02 && candidates[i].score >= top - 0.02;
    CHECK((tied ? candidates[i - 1].agreement >= candidates[i].agreement : candidates[i - 1].score >= candidates[i].score));
  }
  // Where to correct: the round's review of every slice (a small volume), most uncertain
  // first, with each slice's map.
  const RoundReview review = w->LatestReview().value();
  CHECK(review.job_id == job);
  REQUIRE(review.where.size() == static_cast<size_t>(sample.image.shape().z));
  for (size_t i = 1; i < review.where.size(); ++i) {
    CHECK(review.uncertainty.at(review.where[i - 1]) >= review.uncertainty.at(review.where[i]));
  }
  CHECK(review.agreement.size() == candidates.size());
  CHECK(review.MapOf(review.where[0]).value().shape() == VolumeShape{1, sample.image.shape().y, sample.image.shape().x, 1});
  CHECK(review.Next(review.where[0]) == review.where[1]);
  CHECK(review.Next(review.where.back()) == review.where[0]);

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
  CHECK(w->LatestReview().value().job_id != job);   // the retrain's own review is the latest

  {  // The volume and the labels were uploaded with progress, to their last byte.
    std::lock_guard<std::mutex> lock(said_mu);
    REQUIRE(said.count("the volume"));
    CHECK(said["the volume"].first == said["the volume"].second);
    CHECK(said["the volume"].second >= static_cast<int64_t>(sample.image.size_bytes()));
    CHECK(said.count("the labels"));
  }

  // 6. Apply to the whole volume and export.
  const std::string apply = w->Apply().value();
  REQUIRE(w->Wait(apply, 600).ok());
  REQUIRE(w->Export(apply, dir / "labels.tif", dir / "model.pt").ok());
  const Volume labels = ReadTiff(dir / "labels.tif").value();
  CHECK(labels.shape() == sample.image.shape());
  // The same labels as an HDF5 dataset (dataset /labels when the name has none).
  REQUIRE(w->Export(apply, dir / "labels.h5", "").ok());
  CHECK(Hdf5Reader::Open(ParseVolumePath(dir / "labels.h5:/labels")).value()->ReadSlices(0, -1).value() == labels);
  CHECK_FALSE(std::filesystem::exists(dir / "labels.h5.download.tif"));
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
  const std::string z = testing::WriteSampleFiles(dir);
  REQUIRE(!z.empty());
  testing::Spit(dir / "session.script",
                "# a user's session, replayed\n" + testing::ScriptOpening(dir, z) +
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
  testing::Spit(dir / "bad.script", "{\"open\": \"" + dir / "volume.tif" + "\"}\n{\"class\": \"a\"}\n"
                                    "{\"stroke\": {\"slice\": 1, \"class\": 1, \"path\": [[5, 5]]}}\n{\"fly\": 1}\n");
  const std::string err = testing::RunCommand(std::string(IDLEGRID_BIN_DIR) + "/idlegrid-wizard --script " +
                                                  dir / "bad.script" + " --session " + dir / "s2" + " --nodes 0 2>&1",
                                              &rc);
  CHECK(rc == 1);
  CHECK_THAT(err, Catch::Contains("bad.script:4: unknown command"));
  const Volume saved = ReadTiff(dir / "s2/labels.tif").value();
  CHECK(saved.data<uint8_t>()[saved.Index(1, 5, 5)] == 1);
}

TEST_CASE("a noisy volume is denoised first in the candidates' job, and the round's models read it", "[client][wizard]") {
  testing::TempDir dir;
  const MaterialsSample& sample = testing::SmallSample();
  const Volume noisy = testing::NoisySmallSample(0.2, 11);
  SampleOptions quiet;  // the small sample's phases with a tenth of its noise
  quiet.shape = sample.image.shape();
  quiet.noise_sigma = 0.006;
  REQUIRE(WriteTiff(dir / "clean.tif", GenerateMaterialsSample(quiet).value().image).ok());
  REQUIRE(WriteTiff(dir / "noisy.tif", noisy).ok());
  WizardOptions o;
  o.session_dir = dir / "clean-session";
  o.bin = IDLEGRID_BIN_DIR;
  o.local_nodes = 2;
  o.max_steps_per_candidate = 6;
  {
    auto w = Wizard::Create(o).value();
    REQUIRE(w->Open(dir / "clean.tif").ok());
    const double level = w->NoiseLevel().value();
    INFO("quiet sample: noise level " << level);
    CHECK(level < models::kDenoiseFirstNoiseLevel);
  }
  o.session_dir = dir / "session";
  auto w = Wizard::Create(o).value();
  REQUIRE(w->Open(dir / "noisy.tif").ok());
  CHECK(w->NoiseLevel().value() >= models::kDenoiseFirstNoiseLevel);
  for (const char* name : {"matrix", "pore", "inclusion"}) REQUIRE(w->annotation().AddClass(name).ok());
  PaintLike(w->annotation(), sample.scribbles, sample.label_slice);
  const std::string job = w->TrainCandidates(true).value();
  const Json s = w->Wait(job, 600).value();
  REQUIRE(s["stage_names"][0] == "train the denoiser");
  REQUIRE(s["outputs"].contains("denoised"));
  // Every later job of the round reads the denoised volume, not the image.
  const BlobRef input = w->ModelInput().value();
  CHECK(input.sha256 == s["outputs"]["denoised"]["sha256"]);
  const std::vector<Candidate> candidates = w->Candidates().value();
  REQUIRE(candidates.size() >= 2);
  REQUIRE(w->Choose(candidates[0]).ok());
  const Volume predicted = w->Predict(candidates[0].model, sample.label_slice, sample.label_slice + 1).value();
  CHECK(predicted.shape() == VolumeShape{1, noisy.shape().y, noisy.shape().x, 1});
  const std::string retrain = w->SubmitRetrain().value();
  const Json r = w->grid().JobStatus(retrain).value();
  CHECK(r["inputs"]["image"]["sha256"] == input.sha256);
  CHECK(r["inputs"]["init"]["sha256"] == candidates[0].model.sha256);
  w->grid().Cancel(retrain).IgnoreError();
}

TEST_CASE("the errors a wizard user can meet are clear and lose no labels", "[client][wizard]") {
  testing::TempDir dir;
  const std::string z = testing::WriteSampleFiles(dir);
  REQUIRE(!z.empty());
  server::ServerOptions so;
  so.data_dir = dir / "server";
  so.port = 0;
  auto srv = server::Server::Create(so).value();
  REQUIRE(srv->Start().ok());
  WizardOptions o;
  o.session_dir = dir / "session";
  o.local_grid = false;
  o.server = srv->url();
  o.fingerprint = srv->fingerprint();

  // Wrong token, wrong certificate, nobody listening: refused at once, with the reason.
  o.token = "not-the-token";
  auto wrong = Wizard::Create(o);
  REQUIRE_FALSE(wrong.ok());
  CHECK_THAT(wrong.status().message(), Catch::Contains("token") || Catch::Contains("401"));
  o.token = srv->first_start().admin_token;
  WizardOptions forged = o;
  forged.fingerprint = std::string(95, 'A');
  auto pinned = Wizard::Create(forged);
  REQUIRE_FALSE(pinned.ok());
  CHECK_THAT(pinned.status().message(), Catch::Contains("certificate") || Catch::Contains("fingerprint"));
  WizardOptions away = o;
  away.server = "https://127.0.0.1:1";
  auto unreachable = Wizard::Create(away);
  REQUIRE_FALSE(unreachable.ok());
  CHECK_THAT(unreachable.status().message(), Catch::Contains("127.0.0.1:1"));

  auto w = Wizard::Create(o).value();
  // Not a volume: said so, nothing opened.
  testing::Spit(dir / "notes.tif", "these are notes, not an image");
  Status bad = w->Open(dir / "notes.tif");
  CHECK(bad.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(bad.message(), Catch::Contains("not a volume"));
  CHECK_FALSE(w->is_open());

  // An HDF5 dataset opens as the stack it holds (converted into the session), a series with
  // its time points; a wrong dataset is named.
  const Volume volume = ReadTiff(dir / "volume.tif").value();
  VolumeShape doubled = volume.shape();
  doubled.z *= 2;
  Hdf5WriteOptions two;
  two.frames = 2;
  {
    auto h5 = Hdf5Writer::Open(ParseVolumePath(dir / "scan.h5:/entry/raw"), doubled, volume.dtype(), two).value();
    REQUIRE(h5->Append(volume).ok());
    REQUIRE(h5->Append(volume).ok());
    REQUIRE(h5->Close().ok());
  }
  CHECK_THAT(w->Open(dir / "scan.h5:/entry/nope").message(), Catch::Contains("dataset /entry/nope does not exist"));
  CHECK_FALSE(w->is_open());
  REQUIRE(w->Open(dir / "scan.h5:/entry/raw").ok());
  CHECK(w->stack().shape() == doubled);
  CHECK(w->stack().frames() == 2);
  CHECK(w->session().image_path == dir / "session/image.tif");
  CHECK(*w->stack().Slice(volume.shape().z + 1).value() == ExtractSlab(volume, SlabRange{1, 2, 0, 0}).value());

  // Staging, the slow half of opening (the window runs it on its task thread), counts its
  // slices and leaves the open session as it is until Open takes the stack; a cancel leaves
  // nothing behind.
  REQUIRE(w->Open(dir / "volume.tif").ok());
  int64_t last = 0;
  const std::string staged = w->Stage(dir / "scan.h5:/entry/raw", [&](int64_t done, int64_t total) {
    CHECK(total == doubled.z);
    CHECK(done > last);
    last = done;
  }).value();
  CHECK(last == doubled.z);
  CHECK(staged == w->StagedPath());
  CHECK(w->stack().shape() == volume.shape());
  CHECK(w->session().image_path == dir / "volume.tif");
  REQUIRE(w->Open(staged).ok());
  CHECK(w->stack().shape() == doubled);
  CHECK(w->session().image_path == dir / "session/image.tif");
  CHECK_FALSE(std::filesystem::exists(staged));
  CHECK(w->Stage(dir / "volume.tif").value() == dir / "volume.tif");  // a TIFF needs no staging
  std::atomic<bool> stop{true};
  w->set_cancel(&stop);
  CHECK(w->Stage(dir / "scan.h5:/entry/raw").status().code() == StatusCode::kCancelled);
  w->set_cancel(nullptr);
  CHECK_FALSE(std::filesystem::exists(w->StagedPath()));
  CHECK_FALSE(std::filesystem::exists(w->StagedPath() + ".tmp"));

  // A failed (here: cancelled) job is a message naming the job, not a hang.
  REQUIRE(w->Open(dir / "volume.tif").ok());
  REQUIRE(w->annotation().AddClass("a").ok());
  REQUIRE(w->annotation().AddClass("b").ok());
  REQUIRE(w->annotation().Stroke(0, {{5, 5}, {30, 5}}, 2, 1).ok());
  REQUIRE(w->annotation().Stroke(0, {{5, 40}, {30, 40}}, 2, 2).ok());
  const std::string job = w->TrainCandidates().value();
  REQUIRE(w->grid().Cancel(job).ok());
  auto waited = w->Wait(job, 30);
  REQUIRE_FALSE(waited.ok());
  CHECK_THAT(waited.status().message(), Catch::Contains(job) && Catch::Contains("cancelled"));

  // The disk refuses the autosave (here: a folder where the file must go): an error, and the
  // labels are still there to save once the disk takes them again.
  REQUIRE(w->annotation().Stroke(1, {{10, 10}, {20, 20}}, 3, 2).ok());
  const std::vector<int64_t> counts = w->annotation().counts();
  std::filesystem::create_directories(dir / "session/labels.tif.tmp/blocked");
  CHECK_FALSE(w->Save().ok());
  CHECK(w->annotation().counts() == counts);
  std::filesystem::remove_all(dir / "session/labels.tif.tmp");
  REQUIRE(w->Save().ok());
  w.reset();
  o.local_grid = false;
  auto again = Wizard::Create(o).value();
  REQUIRE(again->Reopen().ok());
  CHECK(again->annotation().counts() == counts);
}

// The idlegrid-node processes the wizard `parent` started. Matching on the command line alone
// also finds a node's child in the moment between fork and exec of its worker, when it still
// carries the node's command line (CI once counted three nodes that way).
pid_t ParentOf(const std::string& pid) {
  const std::string stat = testing::Slurp("/proc/" + pid + "/stat");  // "pid (comm) state ppid ..."
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 1));
  std::string state;
  pid_t ppid = -1;
  rest >> state >> ppid;
  return ppid;
}
std::vector<pid_t> NodesOf(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string cmd = testing::Slurp("/proc/" + name + "/cmdline");
    if (cmd.find("idlegrid-node") != std::string::npos && ParentOf(name) == parent) out.push_back(std::stoi(name));
  }
  return out;
}
bool Alive(pid_t pid) {
  const std::string status = testing::Slurp("/proc/" + std::to_string(pid) + "/status");
  return !status.empty() && status.find("State:\tZ") == std::string::npos;
}

TEST_CASE("a private grid's nodes stop when the wizard is killed", "[client][wizard]") {
  testing::TempDir dir;
  const std::string z = testing::WriteSampleFiles(dir);
  REQUIRE(!z.empty());
  testing::Spit(dir / "s.script", testing::ScriptOpening(dir, z) + "{\"train\": {}}\n");
  testing::ChildProcess wizard({std::string(IDLEGRID_BIN_DIR) + "/idlegrid-wizard", "--script", dir / "s.script",
                                "--session", dir / "session", "--nodes", "2"});
  bool training = false;
  for (int i = 0; i < 200 && !training; ++i) {
    const auto line = wizard.ReadLine(500);
    training = line && line->find("running") != std::string::npos;  // a unit is being computed
  }
  REQUIRE(training);
  const std::vector<pid_t> nodes = NodesOf(wizard.pid());
  REQUIRE(nodes.size() == 2);
  wizard.Signal(SIGKILL);  // no destructor runs: the nodes must notice by themselves
  CHECK(wizard.Wait(10000) == 128 + SIGKILL);
  int alive = 2;
  for (int i = 0; i < 300 && alive > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    alive = 0;
    for (pid_t p : nodes) alive += Alive(p);
  }
  CHECK(alive == 0);
}

}  // namespace
}  // namespace idlegrid::client
