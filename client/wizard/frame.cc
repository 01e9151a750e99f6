// The wizard's window: pages in a book, the task thread, autosave, menus, and the replay of
// scripts through the pages with screenshots.
#include <wx/dcmemory.h>

#include <chrono>
#include <cstdio>

#include "pages.h"
#include "idlegrid/shared/config.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/hdf5_io.h"
#include "idlegrid/shared/tiff_io.h"

namespace idlegrid::client {
namespace {

double Now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
wxString U(const std::string& s) { return wxString::FromUTF8(s); }

const char* kStepNames[] = {"1 Open", "2 Paint", "3 Train", "4 Compare", "5 Correct", "6 Apply", "Denoise"};

}  // namespace

WizardFrame::WizardFrame(const GuiOptions& o)
    : wxFrame(nullptr, wxID_ANY, "idlegrid wizard", wxDefaultPosition, wxSize(1100, 780)), options_(o.wizard) {
  auto* file = new wxMenu;
  file->Append(wxID_OPEN, "&Open a volume...\tCtrl+O");
  const int kReopen = wxNewId(), kGrid = wxNewId(), kDenoiseMenu = wxNewId();
  file->Append(kReopen, "&Continue the last session");
  file->Append(kGrid, "Connect to a &grid...");
  file->Append(kDenoiseMenu, "&Denoise the volume");
  file->AppendSeparator();
  file->Append(wxID_EXIT, "&Quit\tCtrl+Q");
  auto* edit = new wxMenu;
  edit->Append(wxID_UNDO, "&Undo stroke\tCtrl+Z");
  edit->Append(wxID_REDO, "&Redo stroke\tCtrl+Y");
  auto* bar = new wxMenuBar;
  bar->Append(file, "&File");
  bar->Append(edit, "&Edit");
  SetMenuBar(bar);
  CreateStatusBar();

  auto* panel = new wxPanel(this);
  auto* s = new wxBoxSizer(wxVERTICAL);
  steps_ = new wxStaticText(panel, wxID_ANY, "");
  s->Add(steps_, 0, wxALL, 6);
  book_ = new wxSimplebook(panel);
  start_ = new StartPage(book_, this);
  paint_ = new PaintPage(book_, this);
  train_ = new TrainPage(book_, this);
  compare_ = new ComparePage(book_, this);
  apply_ = new ApplyPage(book_, this);
  denoise_ = new DenoisePage(book_, this);
  for (wxWindow* p : std::initializer_list<wxWindow*>{start_, paint_, train_, compare_, apply_, denoise_}) book_->AddPage(p, "");
  s->Add(book_, 1, wxEXPAND);
  panel->SetSizer(s);
  Go(kStart);

  Bind(wxEVT_MENU, [this](wxCommandEvent&) { AskAndOpenVolume(); }, wxID_OPEN);
  Bind(wxEVT_MENU, [this](wxCommandEvent&) {
    Status st = ReopenSession();
    if (!st.ok()) Fail("Cannot continue the last session", st);
  }, kReopen);
  Bind(wxEVT_MENU, [this](wxCommandEvent&) { ConnectGrid(); }, kGrid);
  Bind(wxEVT_MENU, [this](wxCommandEvent&) {
    Status st = Denoise();
    if (!st.ok()) Fail("Cannot denoise", st);
  }, kDenoiseMenu);
  Bind(wxEVT_MENU, [this](wxCommandEvent&) { Close(); }, wxID_EXIT);
  Bind(wxEVT_MENU, [this](wxCommandEvent&) { paint_->Undo(); }, wxID_UNDO);
  Bind(wxEVT_MENU, [this](wxCommandEvent&) { paint_->Redo(); }, wxID_REDO);
  Bind(wxEVT_CLOSE_WINDOW, [this](wxCloseEvent& e) {
    stop_ = true;  // a job wait in progress ends at its next poll; the grid keeps the job
    if (task_.joinable()) task_.join();
    busy_ = labels_locked_ = false;  // the task is over: what was painted is saved now
    Autosave();
    autosave_.Stop();
    script_timer_.Stop();
    e.Skip();
  });
  autosave_.Bind(wxEVT_TIMER, [this](wxTimerEvent&) { Autosave(); });
  autosave_.Start(15000);
  script_timer_.Bind(wxEVT_TIMER, [this](wxTimerEvent&) { ScriptTick(); });

  // The grid remembered from last time (config.json), else this computer only.
  Json grid = Json::object();
  if (!options_.local_grid) {
    grid = {{"server", options_.server}, {"fingerprint", options_.fingerprint}, {"token", options_.token}};
  } else if (StatusOr<Paths> paths = ResolvePaths(); paths.ok() && o.script.empty()) {
    StatusOr<Json> config = LoadConfig(paths->config_file());
    if (config.ok() && config->contains("wizard_grid") && (*config)["wizard_grid"].is_object()) grid = (*config)["wizard_grid"];
  }
  StartGrid(grid);
  pending_open_ = o.open;  // opened once the grid is up
  if (!o.script.empty()) {
    script_path_ = o.script;
    shots_ = o.shots;
    StatusOr<std::vector<ScriptLine>> lines = ReadScript(o.script);
    if (!lines.ok()) {
      std::fprintf(stderr, "idlegrid-wizard: %s\n", lines.status().message().c_str());
      exit_code_ = 2;
      CallAfter([this] { Close(true); });
    } else {
      script_ = std::move(*lines);
      script_t0_ = Now();
      script_timer_.Start(150);
    }
  }
}

WizardFrame::~WizardFrame() {
  stop_ = true;
  if (task_.joinable()) task_.join();
}

void WizardFrame::Go(Page p) {
  book_->ChangeSelection(static_cast<size_t>(p));
  int step = 0;
  switch (p) {
    case kStart: step = 0; break;
    case kPaint: step = paint_->correcting() ? 4 : 1; break;
    case kTrain: step = 2; break;
    case kCompare: step = 3; break;
    case kApply: step = 5; break;
    case kDenoise: step = 6; break;
  }
  wxString text;
  for (int i = 0; i < 7; ++i) {
    if (i == 6 && step != 6) break;
    text += (i ? "   >   " : "") + (i == step ? "[ " + wxString(kStepNames[i]) + " ]" : wxString(kStepNames[i]));
  }
  steps_->SetLabel(text);
  start_->Update();
}

bool WizardFrame::RunTask(const wxString& what, std::function<Status()> work, std::function<void(const Status&)> done) {
  if (busy_) {
    Say("Busy: " + what + " waits for the current task");
    return false;
  }
  if (task_.joinable()) task_.join();
  busy_ = true;
  if (!what.empty()) SetStatusText(what + "...");
  task_ = std::thread([this, work = std::move(work), done = std::move(done)] {
    Status st = work();
    if (stop_) return;
    CallAfter([this, st, done] {
      if (task_.joinable()) task_.join();
      busy_ = false;
      start_->Update();
      if (done) done(st);
      if (!busy_) paint_->RequestPrediction();  // when correcting, one may have waited for this task
    });
  });
  return true;
}

Status WizardFrame::WaitJob(const std::string& id, std::function<void(const Json&)> progress) {
  // Polls for as long as the job runs (overnight is fine); the window closing ends the wait.
  for (int64_t i = 0; i < (int64_t{1} << 40) && !stop_; ++i) {
    IDLEGRID_ASSIGN_OR_RETURN(Json s, wizard_->grid().JobStatus(id));
    if (progress) CallAfter([progress, s] { progress(s); });
    const std::string state = s.value("state", std::string());
    if (state == "done") return Status::Ok();
    if (state == "failed" || state == "cancelled") {
      return FailedPreconditionError("job " + id + " " + state + ": " + s.value("error", std::string()));
    }
    for (int k = 0; k < 5 && !stop_; ++k) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return CancelledError("the wizard is closing");
}

void WizardFrame::Fail(const wxString& what, const Status& s) {
  const wxString message = what + ":\n" + U(s.message());
  if (scripted()) {
    std::fprintf(stderr, "idlegrid-wizard: %s: %s\n", what.utf8_string().c_str(), s.message().c_str());
    exit_code_ = 1;
    Close(true);
    return;
  }
  SetStatusText(what);
  wxMessageBox(message + "\n\nYour labels are saved in the session folder.", "idlegrid", wxOK | wxICON_ERROR, this);
}

void WizardFrame::StartGrid(const Json& grid) {
  WizardOptions o = options_;
  o.server = grid.value("server", std::string());
  o.fingerprint = grid.value("fingerprint", std::string());
  o.token = grid.value("token", std::string());
  o.local_grid = o.server.empty();
  // Uploads of a large volume take minutes: say what moves and how long it will take.
  o.on_transfer = [this, t0 = std::make_shared<std::chrono::steady_clock::time_point>()](const std::string& what,
                                                                                       int64_t done, int64_t total) {
    const auto now = std::chrono::steady_clock::now();
    if (done == 0 || *t0 == std::chrono::steady_clock::time_point{}) *t0 = now;
    const double s = std::chrono::duration<double>(now - *t0).count();
    const double left = done > 0 && s > 0 ? static_cast<double>(total - done) * s / static_cast<double>(done) : 0;
    const wxString text = wxString::Format("Uploading %s: %.0f of %.0f MiB, about %.0f s left", U(what),
                                           static_cast<double>(done) / (1 << 20), static_cast<double>(total) / (1 << 20), left);
    CallAfter([this, text] { Say(text); });
  };
  paint_->Detach();  // the pages hold pointers into the open session
  compare_->Load({});
  Go(kStart);
  wizard_.reset();  // stops a private grid before another starts
  auto made = std::make_shared<std::unique_ptr<Wizard>>();
  RunTask(o.local_grid ? "Starting this computer's grid" : "Connecting to " + U(o.server),
          [o, made] {
            IDLEGRID_ASSIGN_OR_RETURN(*made, Wizard::Create(o));
            return Status::Ok();
          },
          [this, o, made](const Status& st) {
            if (!st.ok()) {
              Fail(o.local_grid ? "Cannot start this computer's grid" : "Cannot reach the grid", st);
              if (!o.local_grid) StartGrid(Json::object());  // fall back to this computer only
              return;
            }
            wizard_ = std::move(*made);
            wizard_->set_cancel(&stop_);
            options_ = o;
            if (!pending_open_.empty()) {
              Status opened = OpenVolume(pending_open_);
              pending_open_.clear();
              if (!opened.ok()) Fail("Cannot open this volume", opened);
            }
            Say(o.local_grid ? "Grid: this computer only" : "Connected to " + U(o.server));
            start_->Update();
          });
}

void WizardFrame::ConnectGrid() {
  if (busy_) return Say("Wait for the current task to finish");
  Json current = {{"server", options_.local_grid ? "" : options_.server}, {"fingerprint", options_.fingerprint},
                  {"token", options_.token}};
  GridDialog d(this, current);
  if (d.ShowModal() != wxID_OK) return;
  const Json grid = d.Grid();
  if (StatusOr<Paths> paths = ResolvePaths(); paths.ok()) {
    StatusOr<Json> config = LoadConfig(paths->config_file());
    Json c = config.ok() ? *config : Json::object();
    c["wizard_grid"] = grid;  // remembered (config.json is private to the user)
    EnsureDirs(*paths).IgnoreError();
    SaveConfig(paths->config_file(), c).IgnoreError();
  }
  Autosave();
  StartGrid(grid);
}

void WizardFrame::AskAndOpenVolume() {
  wxFileDialog d(this, "Open a volume", "", "",
                 "Volumes (TIFF, HDF5)|*.tif;*.tiff;*.TIF;*.TIFF;*.h5;*.hdf5;*.hdf;*.he5;*.nxs|All files|*",
                 wxFD_OPEN | wxFD_FILE_MUST_EXIST);
  if (d.ShowModal() != wxID_OK) return;
  std::string path = d.GetPath().utf8_string();
  if (ParseVolumePath(path).hdf5) {
    StatusOr<std::vector<std::string>> sets = ListHdf5Datasets(path);
    if (!sets.ok()) return Fail("Cannot open this volume", sets.status());
    if (sets->empty()) return Fail("Cannot open this volume", InvalidArgumentError(path + " holds no image dataset"));
    size_t chosen = 0;
    if (sets->size() > 1) {
      wxArrayString names;
      for (const std::string& n : *sets) names.Add(U(n));
      const int i = wxGetSingleChoiceIndex("This file holds several datasets. Which one is the volume?", "idlegrid", names, this);
      if (i < 0) return;
      chosen = static_cast<size_t>(i);
    }
    path += ":" + (*sets)[chosen];
  }
  wxBusyCursor busy;
  Status st = OpenVolume(path);
  if (!st.ok()) Fail("Cannot open this volume", st);
}

Status WizardFrame::OpenVolume(const std::string& path) {
  if (wizard_ == nullptr || busy_) return UnavailableError("the grid is busy or still starting; try again in a moment");
  if (!scripted() && wxFileExists(U(options_.session_dir + "/session.json")) &&
      wxMessageBox("Start a new session on this volume? The current session (its labels and jobs) will be replaced.",
                   "idlegrid", wxYES_NO | wxICON_QUESTION, this) != wxYES) {
    return Status::Ok();
  }
  if (!ParseVolumePath(path).hdf5) return OpenStaged(path);
  // An HDF5 dataset becomes a TIFF stack on the task thread, its slices counted in the status
  // bar; the session open now stays usable until the stack is ready.
  Wizard* w = wizard_.get();
  auto staged = std::make_shared<std::string>();
  auto shown = std::make_shared<std::atomic<int64_t>>(-1);
  const bool started = RunTask("Converting " + U(path) + " for the grid", [this, w, path, staged, shown] {
    IDLEGRID_ASSIGN_OR_RETURN(*staged, w->Stage(path, [this, path, shown](int64_t done, int64_t total) {
      const int64_t pct = 100 * done / std::max<int64_t>(total, 1);
      if (shown->exchange(pct) == pct) return;
      CallAfter([this, path, done, total] {
        Say(wxString::Format("Converting %s for the grid: %lld of %lld slices", U(path), static_cast<long long>(done),
                             static_cast<long long>(total)));
      });
    }));
    return Status::Ok();
  }, [this, staged](const Status& st) {
    Status opened = st.ok() ? OpenStaged(*staged) : st;
    if (!opened.ok()) Fail("Cannot open this volume", opened);
  });
  return started ? Status::Ok() : UnavailableError("wait for the current task to finish");
}

Status WizardFrame::OpenStaged(const std::string& path) {
  Status st = wizard_->Open(path);
  if (!wizard_->is_open()) return st;
  // Open may have replaced the labels even when saving them failed: the pages show what is open.
  SetTitle(U("idlegrid wizard - " + wizard_->session().image_path.substr(wizard_->session().image_path.rfind('/') + 1)));
  paint_->SetCorrecting(false);
  paint_->ForgetPredictions();
  paint_->Load();
  Go(kPaint);
  return st;
}

Status WizardFrame::ReopenSession() {
  if (wizard_ == nullptr || busy_) return UnavailableError("the grid is busy or still starting; try again in a moment");
  Autosave();  // the session on disk is the one open here, with its latest strokes
  IDLEGRID_RETURN_IF_ERROR(wizard_->Reopen());
  const std::string path = wizard_->session().image_path;
  SetTitle(U("idlegrid wizard - " + path.substr(path.rfind('/') + 1)));
  paint_->SetCorrecting(!wizard_->session().chosen_model.empty());
  paint_->ForgetPredictions();
  // Back where the user left: the last job (it may have run overnight, or still be running).
  Status followed = Status::Ok();
  bool following = false;
  if (!wizard_->session().jobs.empty()) {
    following = true;
    followed = Follow(wizard_->session().jobs.back());
  }
  paint_->Load();  // while following, the prediction of the slice waits for that task
  if (!following) Go(kPaint);
  return followed;
}

Status WizardFrame::Follow(const SessionJob& job) {
  if (job.purpose == "candidates" || job.purpose == "retrain") {
    const bool retrain = job.purpose == "retrain";
    train_->Start(retrain ? "Fine-tuning the chosen model with your corrections" : "Training candidates - no parameters to choose",
                  retrain ? std::vector<std::string>{"the chosen model"} : std::vector<std::string>{});
    Go(kTrain);
    Wizard* w = wizard_.get();
    const bool started = RunTask(retrain ? "Retraining" : "Waiting for the candidates", [this, w, job, retrain] {
      IDLEGRID_RETURN_IF_ERROR(WaitJob(job.job_id, [this](const Json& s) { train_->ShowStatus(s); }));
      return retrain ? w->AdoptModel(job.job_id) : Status::Ok();
    }, [this, retrain](const Status& st) {
      if (!st.ok()) {
        Go(kPaint);
        return Fail(retrain ? "Retraining failed" : "Training failed", st);
      }
      if (retrain) return Chosen();
      ShowCandidates();
    });
    return started ? Status::Ok() : UnavailableError("wait for the current task to finish");
  }
  Wizard* w = wizard_.get();
  const bool apply = job.purpose == "apply";
  const std::string out = options_.session_dir + (apply ? "/applied-labels.tif" : "/denoised.tif");
  Go(apply ? kApply : kDenoise);
  if (apply) apply_->Start(job.job_id);
  if (!apply) denoise_->Start(job.job_id);
  auto views = std::make_shared<ApplyViews>();
  const bool started = RunTask(apply ? "Segmenting the whole volume" : "Denoising", [this, w, job, apply, out, views] {
    IDLEGRID_RETURN_IF_ERROR(WaitJob(job.job_id, [this, apply](const Json& s) {
      if (apply) apply_->ShowStatus(s);
      if (!apply) denoise_->ShowStatus(s);
    }));
    IDLEGRID_RETURN_IF_ERROR(w->grid().FetchOutput(job.job_id, apply ? "labels" : "denoised", out));
    if (!apply) return Status::Ok();
    // The orthogonal views come from overviews read a slice at a time, never the volume.
    IDLEGRID_ASSIGN_OR_RETURN(*views, PrepareApplyViews(w->stack(), out));
    return Status::Ok();
  }, [this, apply, out, views](const Status& st) {
    if (!st.ok()) return Fail(apply ? "Applying the model failed" : "Denoising failed", st);
    Status loaded = apply ? apply_->Load(std::move(*views)) : denoise_->Load(out);
    if (!loaded.ok()) Fail("Cannot show the result", loaded);
  });
  return started ? Status::Ok() : UnavailableError("wait for the current task to finish");
}

void WizardFrame::GoPaint() {
  if (wizard_ != nullptr && wizard_->is_open()) Go(kPaint);
}

void WizardFrame::Autosave() {
  if (wizard_ == nullptr || !wizard_->is_open() || labels_locked_) return;
  Status st = wizard_->Save();
  if (!st.ok()) SetStatusText(U("Autosave failed (your labels are still here): " + st.message()));
}

Status WizardFrame::TrainCandidates() {
  if (wizard_ == nullptr || !wizard_->is_open()) return FailedPreconditionError("open a volume first");
  if (busy_) return UnavailableError("wait for the current task to finish");
  if (wizard_->annotation().classes().size() < 2) return FailedPreconditionError("paint at least two classes");
  return Submit("candidates");
}

void WizardFrame::ShowCandidates() {
  auto list = std::make_shared<std::vector<Candidate>>();
  Wizard* w = wizard_.get();
  RunTask("Loading the candidates", [w, list] {
    IDLEGRID_ASSIGN_OR_RETURN(*list, w->Candidates());
    return Status::Ok();
  }, [this, list](const Status& st) {
    if (!st.ok()) return Fail("Cannot list the candidates", st);
    for (const Candidate& c : *list) {
      // Chosen from these already (a session continued): back to correcting.
      if (c.model.sha256 == wizard_->session().chosen_model) return Chosen();
    }
    compare_->Load(*list);
    Go(kCompare);
    compare_->ShowSlice(paint_->slice());
  });
}

void WizardFrame::Chosen() {
  paint_->ForgetPredictions();
  paint_->SetCorrecting(true);
  Go(kPaint);
  paint_->ShowSlice(paint_->slice());
}

Status WizardFrame::Retrain() {
  if (busy_) return UnavailableError("wait for the current task to finish");
  if (wizard_ == nullptr || wizard_->session().chosen_model.empty()) return FailedPreconditionError("choose a candidate first");
  return Submit("retrain");
}

Status WizardFrame::Apply() {
  if (busy_) return UnavailableError("wait for the current task to finish");
  if (wizard_ == nullptr || wizard_->session().chosen_model.empty()) return FailedPreconditionError("choose a candidate first");
  return Submit("apply");
}

Status WizardFrame::Denoise() {
  if (wizard_ == nullptr || !wizard_->is_open()) return FailedPreconditionError("open a volume first");
  if (busy_) return UnavailableError("wait for the current task to finish");
  return Submit("denoise");
}

Status WizardFrame::Submit(const std::string& purpose) {
  Wizard* w = wizard_.get();
  auto id = std::make_shared<std::string>();
  // Candidates and retraining send the labels: painting waits until they are on the grid.
  const bool reads_labels = purpose == "candidates" || purpose == "retrain";
  const bool denoise_first = purpose == "candidates" && paint_->DenoiseFirst();
  const bool started = RunTask("Submitting the " + purpose + " job", [w, purpose, id, denoise_first] {
    if (purpose == "candidates") {
      IDLEGRID_ASSIGN_OR_RETURN(*id, w->TrainCandidates(denoise_first));
    } else if (purpose == "retrain") {
      IDLEGRID_ASSIGN_OR_RETURN(*id, w->SubmitRetrain());
    } else {
      IDLEGRID_ASSIGN_OR_RETURN(*id, purpose == "apply" ? w->Apply() : w->Denoise());
    }
    return Status::Ok();
  }, [this, purpose, id](const Status& st) {
    labels_locked_ = false;
    if (!st.ok()) return Fail("Cannot submit the " + purpose + " job", st);
    Status followed = Follow({*id, purpose});
    if (!followed.ok()) Fail("Cannot follow the job", followed);
  });
  if (!started) return UnavailableError("wait for the current task to finish");
  labels_locked_ = reads_labels;
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
// Scripts: each command goes through the page methods the mouse and buttons call.

void WizardFrame::ScriptTick() {
  if (busy_ || wizard_ == nullptr || in_tick_) return;
  in_tick_ = true;
  struct Leave {
    bool* flag;
    ~Leave() { *flag = false; }
  } leave{&in_tick_};
  if (step_started_task_) {  // the last step's task has ended: that step is done
    std::printf("    %.1f s\n", Now() - step_t0_);
    step_started_task_ = false;
    step_t0_ = 0;
    ++next_;
  }
  if (next_ >= script_.size()) {
    script_timer_.Stop();
    Json summary{{"seconds", Now() - script_t0_}};
    if (wizard_->is_open()) summary["labelled_pixels"] = wizard_->annotation().labelled();
    std::printf("%s\n", summary.dump().c_str());
    Close(true);
    return;
  }
  const ScriptLine& line = script_[next_];
  if (step_t0_ == 0) {
    step_t0_ = Now();
    std::printf("[%d] %s\n", line.number, line.text.substr(0, 100).c_str());
  }
  Status st = ScriptStep(line.command);
  if (st.code() == StatusCode::kUnavailable && Now() - step_t0_ < 1800) return;  // loading: again next tick
  if (!st.ok()) {
    std::fprintf(stderr, "idlegrid-wizard: %s:%d: %s\n", script_path_.c_str(), line.number, st.message().c_str());
    exit_code_ = 1;
    script_timer_.Stop();
    Close(true);
    return;
  }
  if (busy_) {  // timed when its task ends
    step_started_task_ = true;
    return;
  }
  std::printf("    %.1f s\n", Now() - step_t0_);
  step_t0_ = 0;
  ++next_;
}

Status WizardFrame::ScriptStep(const Json& cmd) {
  const std::string name = cmd.begin().key();
  const Json& arg = cmd.begin().value();
  if (name == "open") return OpenVolume(arg.get<std::string>());
  if (name == "reopen") return ReopenSession();
  if (name == "class") return paint_->AddClass(arg.get<std::string>());
  if (name == "slice") {
    paint_->ShowSlice(arg.get<int64_t>());
    compare_->ShowSlice(arg.get<int64_t>());
    return Status::Ok();
  }
  if (name == "zoom") {
    paint_->Zoom(arg.get<double>());
    return Status::Ok();
  }
  if (name == "stroke" || name == "erase" || name == "accept") {
    paint_->ShowSlice(arg.value("slice", paint_->slice()));
    if (name == "stroke") {
      paint_->SelectClass(arg.value("class", uint8_t{1}));
      paint_->SetTool(PaintPage::Tool::kBrush);
    } else {
      paint_->SetTool(name == "erase" ? PaintPage::Tool::kEraser : PaintPage::Tool::kAccept);
    }
    paint_->SetRadius(arg.value("radius", 3.0));
    return paint_->ApplyStroke(PathOf(arg["path"]));
  }
  if (name == "paint_labels") {
    IDLEGRID_ASSIGN_OR_RETURN(Volume l, ReadTiff(arg["file"].get<std::string>()));
    IDLEGRID_RETURN_IF_ERROR(PaintLabels(wizard_->annotation(), l, arg.value("slice", int64_t{0})));
    paint_->ShowSlice(arg.value("slice", int64_t{0}));
    paint_->UpdateCounter();
    return Status::Ok();
  }
  if (name == "undo") {
    paint_->Undo();
    return Status::Ok();
  }
  if (name == "redo") {
    paint_->Redo();
    return Status::Ok();
  }
  if (name == "train") return TrainCandidates();
  if (name == "compare") {
    compare_->ShowSlice(arg.value("slice", paint_->slice()));
    return compare_->ready() ? Status::Ok() : UnavailableError("the candidates are segmenting the slice");
  }
  if (name == "pick") return compare_->Choose(arg.get<std::string>());
  if (name == "uncertain") return paint_->GoMostUncertain();
  if (name == "correct_from") {
    const int64_t z = arg.value("slice", paint_->slice());
    if (paint_->slice() != z) paint_->ShowSlice(z);
    const Volume* p = paint_->Prediction(z);
    if (p == nullptr) {
      paint_->RequestPrediction();
      return UnavailableError("the prediction of this slice is loading");
    }
    IDLEGRID_ASSIGN_OR_RETURN(Volume truth, ReadTiff(arg["file"].get<std::string>()));
    IDLEGRID_ASSIGN_OR_RETURN(Corrections c, SimulateCorrections(wizard_->annotation(), truth, *p, z, arg.value("step", int64_t{4})));
    std::printf("  accepted %lld, corrected %lld\n", static_cast<long long>(c.accepted), static_cast<long long>(c.corrected));
    paint_->RefreshAll();
    paint_->UpdateCounter();
    return Status::Ok();
  }
  if (name == "retrain") return Retrain();
  if (name == "apply") return Apply();
  if (name == "export") return apply_->Export(arg.value("labels", std::string()), arg.value("model", std::string()));
  if (name == "denoise") return Denoise();
  if (name == "save") return wizard_->Save();
  if (name == "shot") return Screenshot(arg.get<std::string>());
  if (name == "page") {
    const std::string p = arg.get<std::string>();
    const char* names[] = {"start", "paint", "train", "compare", "apply", "denoise"};
    for (int i = 0; i < 6; ++i) {
      if (p == names[i]) {
        Go(static_cast<Page>(i));
        return Status::Ok();
      }
    }
    return InvalidArgumentError("no page " + p);
  }
  return InvalidArgumentError("unknown command \"" + name + "\"");
}

Status WizardFrame::Screenshot(const std::string& name) {
  if (shots_.empty()) return Status::Ok();
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(shots_, 0755));
  if (!shot_drawn_) {  // everything laid out and painted first: the shot is taken next tick
    shot_drawn_ = true;
    Layout();
    Refresh();
    return UnavailableError("drawing");
  }
  shot_drawn_ = false;
  wxClientDC dc(this);
  const wxSize size = GetClientSize();
  wxBitmap bmp(size.x, size.y, 24);
  wxMemoryDC mem(bmp);
  mem.Blit(0, 0, size.x, size.y, &dc, 0, 0);
  mem.SelectObject(wxNullBitmap);
  const wxImage img = bmp.ConvertToImage();
  const std::string base = shots_ + "/" + name;
  if (!img.SaveFile(U(base + ".png"), wxBITMAP_TYPE_PNG) || !img.SaveFile(U(base + ".bmp"), wxBITMAP_TYPE_BMP)) {
    return IoError("cannot save the screenshot " + base);
  }
  std::printf("  shot %s %dx%d\n", name.c_str(), size.x, size.y);
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
namespace {

const GuiOptions* g_options = nullptr;
int g_exit_code = 0;
bool g_assertions = false;

class WizardApp : public wxApp {
 public:
  bool OnInit() override {
    wxInitAllImageHandlers();
    if (!g_options->script.empty()) {
      // A replay has nobody to click an assertion dialog away: say it and fail.
      wxSetAssertHandler([](const wxString& file, int line, const wxString& func, const wxString& cond, const wxString& msg) {
        std::fprintf(stderr, "idlegrid-wizard: wx assertion %s failed in %s (%s:%d): %s\n", cond.utf8_string().c_str(),
                     func.utf8_string().c_str(), file.utf8_string().c_str(), line, msg.utf8_string().c_str());
        g_assertions = true;
      });
    }
    frame_ = new WizardFrame(*g_options);
    frame_->Bind(wxEVT_CLOSE_WINDOW, [this](wxCloseEvent& e) {
      g_exit_code = frame_->exit_code();
      e.Skip();
    });
    frame_->Show();
    return true;
  }

 private:
  WizardFrame* frame_ = nullptr;
};

}  // namespace

int RunGui(const char* argv0, const GuiOptions& options) {
  g_options = &options;
  wxApp::SetInstance(new WizardApp());
  int argc = 1;
  char* argv[] = {const_cast<char*>(argv0), nullptr};
  const int rc = wxEntry(argc, argv);
  return rc != 0 ? rc : g_exit_code != 0 ? g_exit_code : g_assertions ? 3 : 0;
}

}  // namespace idlegrid::client
