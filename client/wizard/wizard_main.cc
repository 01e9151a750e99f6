// idlegrid-wizard [--open VOLUME] [--session DIR] [--server URL --fingerprint F --token T]
// idlegrid-wizard --script FILE [--gui --shots DIR] ...
//
// Replays a whole wizard session without a display, through the same core the wx pages use
// (client/wizard.h): one JSON object per line ('#' starts a comment):
//   {"open": "volume.tif"}                     {"class": "pore"}
//   {"stroke": {"slice": 24, "class": 1, "radius": 3, "path": [[x, y], ...]}}   (class 0 erases)
//   {"paint_labels": {"file": "scribbles.tif", "slice": 24}}   replays painted labels as strokes
//   {"undo": 1}  {"redo": 1}
//   {"train": {}}            candidates with no parameters ({"max_steps": N} caps them: tests);
//   {"train": "denoise first"}   the same on a denoised copy (one job: denoise, then segment)
//   {"pick": "best"}         or a candidate's name
//   {"compare": {"slice": 24, "png": "compare.png"}}   every candidate on one slice, side by side
//   {"accept": {"slice": 24, "radius": 4, "path": [[x, y], ...]}}
//   {"correct_from": {"file": "truth.tif", "slice": 24, "step": 4}}   a simulated user's corrections
//   {"retrain": {}}  {"apply": {}}  {"export": {"labels": "out.tif", "model": "model.pt"}}
//   {"denoise": {}}
//   {"slice": 24}  {"zoom": 2}  {"page": "train"}  {"shot": "paint"}   the wx pages only (--gui):
//                            move, zoom, show a page, save a screenshot
// Without --server the grid is private ("this computer only": a server and a node here).
// Without --script (or with --gui) the interactive wx wizard starts (client/wizard/gui.h).
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <fstream>

#include <CLI/CLI.hpp>

#include "idlegrid/client/script.h"
#include "idlegrid/client/wizard.h"
#ifdef IDLEGRID_WITH_WX
#include "gui.h"
#endif
#include "idlegrid/shared/config.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/png.h"
#include "idlegrid/shared/tiff_io.h"

namespace idlegrid::client {
namespace {

using Clock = std::chrono::steady_clock;

class Driver {
 public:
  explicit Driver(std::unique_ptr<Wizard> w) : w_(std::move(w)) {}

  Status Step(const Json& cmd) {
    if (!cmd.is_object() || cmd.size() != 1) return InvalidArgumentError("each line is one {\"command\": argument}");
    const std::string name = cmd.begin().key();
    const Json& arg = cmd.begin().value();
    if (name == "open") return w_->Open(arg.get<std::string>());
    if (name == "class") return w_->annotation().AddClass(arg.get<std::string>()).status();
    if (name == "stroke" || name == "erase") {
      const uint8_t value = name == "erase" ? 0 : arg.value("class", 1);
      return w_->annotation().Stroke(arg.value("slice", int64_t{0}), PathOf(arg["path"]), arg.value("radius", 3.0), value).status();
    }
    if (name == "paint_labels") {
      IDLEGRID_ASSIGN_OR_RETURN(Volume l, ReadTiff(arg["file"].get<std::string>()));
      IDLEGRID_RETURN_IF_ERROR(PaintLabels(w_->annotation(), l, arg.value("slice", int64_t{0})));
      return w_->Save();
    }
    if (name == "undo") return w_->annotation().Undo() ? Status::Ok() : FailedPreconditionError("nothing to undo");
    if (name == "redo") return w_->annotation().Redo() ? Status::Ok() : FailedPreconditionError("nothing to redo");
    if (name == "train") {
      IDLEGRID_ASSIGN_OR_RETURN(std::string job, w_->TrainCandidates(arg == "denoise first"));
      return WaitFor(job);
    }
    if (name == "pick") {
      IDLEGRID_ASSIGN_OR_RETURN(std::vector<Candidate> all, w_->Candidates());
      for (const Candidate& c : all) {
        if (arg == "best" || c.name == arg) {
          std::printf("  chose %s (validation Dice %.4f)\n", c.name.c_str(), c.score);
          return w_->Choose(c);
        }
      }
      return NotFoundError("no candidate " + arg.dump());
    }
    if (name == "uncertain") {  // where the round's models are unsure, most first
      IDLEGRID_ASSIGN_OR_RETURN(RoundReview r, w_->LatestReview());
      std::printf("  most uncertain slices:");
      for (size_t i = 0; i < r.where.size() && i < 5; ++i) {
        std::printf(" %lld (%.3f)", static_cast<long long>(r.where[i] + 1), r.uncertainty.at(r.where[i]));
      }
      std::printf("\n");
      return Status::Ok();
    }
    if (name == "compare") return Compare(arg.value("slice", int64_t{0}), arg.value("png", std::string("compare.png")));
    if (name == "accept") {
      const int64_t z = arg.value("slice", int64_t{0});
      IDLEGRID_ASSIGN_OR_RETURN(Volume p, ChosenPrediction(z));
      return w_->annotation().Accept(z, PathOf(arg["path"]), arg.value("radius", 4.0), p.data<uint8_t>()).status();
    }
    if (name == "correct_from") return CorrectFrom(arg);
    if (name == "retrain") {
      IDLEGRID_ASSIGN_OR_RETURN(std::string job, w_->Retrain(24 * 3600, Progress()));
      std::printf("  fine-tuned the chosen model (job %s)\n", job.c_str());
      return Status::Ok();
    }
    if (name == "apply") {
      IDLEGRID_ASSIGN_OR_RETURN(apply_job_, w_->Apply());
      return WaitFor(apply_job_);
    }
    if (name == "export") {
      if (apply_job_.empty()) return FailedPreconditionError("apply the model first");
      return w_->Export(apply_job_, arg["labels"].get<std::string>(), arg["model"].get<std::string>());
    }
    if (name == "denoise") {
      IDLEGRID_ASSIGN_OR_RETURN(std::string job, w_->Denoise());
      return WaitFor(job);
    }
    if (name == "save") return w_->Save();
    if (name == "shot" || name == "slice" || name == "zoom" || name == "page") return Status::Ok();  // the wx pages' commands
    return InvalidArgumentError("unknown command \"" + name + "\"");
  }

  void Save() {
    if (w_->is_open()) w_->Save().IgnoreError();
  }

  Json Summary() const {
    Json counts = Json::object();
    const auto& classes = w_->annotation().classes();
    for (size_t i = 0; i < classes.size(); ++i) counts[classes[i].name] = w_->annotation().counts()[i + 1];
    return {{"labelled_pixels", w_->annotation().labelled()}, {"per_class", counts},
            {"jobs", w_->session().ToJson()["jobs"]}, {"chosen_model", w_->session().chosen_model}};
  }

 private:
  ProgressFn Progress() {
    return [last = std::string()](const Json& s) mutable {
      int done = 0, total = 0;
      for (const Json& u : s["units"]) ++total, done += u["state"] == "done";
      char line[160];
      std::snprintf(line, sizeof(line), "  %s %s: %d/%d units, %.0f%%", s["job_id"].get<std::string>().c_str(),
                    s["state"].get<std::string>().c_str(), done, total, 100 * s["progress"].get<double>());
      if (line != last) std::printf("%s\n", line);
      last = line;
    };
  }
  Status WaitFor(const std::string& job) { return w_->Wait(job, 24 * 3600, Progress()).status(); }

  StatusOr<Volume> ChosenPrediction(int64_t z) {
    IDLEGRID_ASSIGN_OR_RETURN(std::vector<Candidate> all, w_->Candidates());
    for (const Candidate& c : all) {
      if (c.model.sha256 == w_->session().chosen_model) return w_->Predict(c.model, z, z + 1);
    }
    return FailedPreconditionError("pick a candidate first");
  }

  Status Compare(int64_t z, const std::string& png) {
    IDLEGRID_ASSIGN_OR_RETURN(std::vector<Candidate> all, w_->Candidates());
    IDLEGRID_ASSIGN_OR_RETURN(std::shared_ptr<const Volume> slice, w_->stack().Slice(z));
    const Volume& image = *slice;
    const int64_t h = image.shape().y, w = image.shape().x, n = static_cast<int64_t>(all.size());
    std::vector<uint8_t> gray = GraySlice(image, 0), row(static_cast<size_t>(n * w * h * 3));
    for (int64_t i = 0; i < n; ++i) {
      IDLEGRID_ASSIGN_OR_RETURN(Volume p, w_->Predict(all[i].model, z, z + 1));
      std::vector<uint8_t> panel = gray;
      OverlayLabels(p, 0, 0.5, &panel);
      for (int64_t y = 0; y < h; ++y) {
        std::copy(panel.begin() + y * w * 3, panel.begin() + (y + 1) * w * 3, row.begin() + (y * n * w + i * w) * 3);
      }
      std::printf("  %-16s validation Dice %.4f\n", all[i].name.c_str(), all[i].score);
    }
    return WritePngRgb(png, n * w, h, row);
  }

  Status CorrectFrom(const Json& arg) {
    IDLEGRID_ASSIGN_OR_RETURN(Volume truth, ReadTiff(arg["file"].get<std::string>()));
    const int64_t z = arg.value("slice", int64_t{0});
    IDLEGRID_ASSIGN_OR_RETURN(Volume p, ChosenPrediction(z));
    IDLEGRID_ASSIGN_OR_RETURN(Corrections c, SimulateCorrections(w_->annotation(), truth, p, z, arg.value("step", int64_t{4})));
    std::printf("  accepted %lld right spots, corrected %lld wrong ones; %lld labelled pixels\n",
                static_cast<long long>(c.accepted), static_cast<long long>(c.corrected),
                static_cast<long long>(w_->annotation().labelled()));
    return w_->Save();
  }

  std::unique_ptr<Wizard> w_;
  std::string apply_job_;
};

}  // namespace
}  // namespace idlegrid::client

int main(int argc, char** argv) {
  using namespace idlegrid;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  CLI::App app{"idlegrid-wizard: segment a volume from a few painted strokes"};
  std::string script, session, open, shots;
  bool gui = false;
  client::WizardOptions o;
  int64_t max_steps = 0;
  app.add_option("--script", script, "replay a session from a script (JSON lines)");
  app.add_flag("--gui", gui, "with --script: replay it through the wx pages");
  app.add_option("--shots", shots, "with --gui --script: folder for the {\"shot\": NAME} screenshots");
  app.add_option("--open", open, "a volume to open at start");
  app.add_option("--session", session, "session folder (default: the data folder's wizard-session)");
  app.add_option("--server", o.server, "a lab's work server (default: this computer only)");
  app.add_option("--fingerprint", o.fingerprint, "its certificate fingerprint");
  app.add_option("--token", o.token, "its admin token");
  app.add_option("--nodes", o.local_nodes, "local nodes for \"this computer only\"");
  app.add_option("--max-steps", max_steps, "cap each candidate's training steps (quick looks, tests)");
  CLI11_PARSE(app, argc, argv);
  if (session.empty()) {
    StatusOr<Paths> paths = ResolvePaths();
    session = paths.ok() ? paths->data_dir + "/wizard-session" : "idlegrid-session";
  }
  o.session_dir = session;
  o.local_grid = o.server.empty();
  o.bin = ExecutableDir();
  o.max_steps_per_candidate = max_steps;
  if (script.empty() || gui) {
#ifdef IDLEGRID_WITH_WX
    client::GuiOptions g;
    g.wizard = o;
    g.script = script;
    g.shots = shots;
    g.open = open;
    return client::RunGui(argv[0], g);
#else
    std::fprintf(stderr, "idlegrid-wizard: built without wxWidgets; run a session with --script FILE\n");
    return 2;
#endif
  }
  StatusOr<std::vector<client::ScriptLine>> lines = client::ReadScript(script);
  if (!lines.ok()) {
    std::fprintf(stderr, "idlegrid-wizard: %s\n", lines.status().message().c_str());
    return 2;
  }
  const auto t0 = client::Clock::now();
  StatusOr<std::unique_ptr<client::Wizard>> w = client::Wizard::Create(o);
  if (!w.ok()) {
    std::fprintf(stderr, "idlegrid-wizard: %s\n", w.status().message().c_str());
    return 1;
  }
  client::Driver driver(std::move(*w));
  for (const client::ScriptLine& line : *lines) {
    const auto t = client::Clock::now();
    std::printf("[%d] %s\n", line.number, line.text.substr(0, 100).c_str());
    Status st = driver.Step(line.command);
    if (!st.ok()) {
      std::fprintf(stderr, "idlegrid-wizard: %s:%d: %s\n", script.c_str(), line.number, st.message().c_str());
      driver.Save();  // what was painted so far is kept
      return 1;
    }
    std::printf("    %.1f s\n", std::chrono::duration<double>(client::Clock::now() - t).count());
  }
  Json summary = driver.Summary();
  summary["seconds"] = std::chrono::duration<double>(client::Clock::now() - t0).count();
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}
