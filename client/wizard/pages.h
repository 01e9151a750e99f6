// The wizard's window and its pages, one class per step. Pages never block: grid work runs
// on the frame's task thread (one at a time) and comes back to the UI thread as events.
#ifndef IDLEGRID_CLIENT_WIZARD_PAGES_H_
#define IDLEGRID_CLIENT_WIZARD_PAGES_H_

#include <wx/simplebook.h>
#include <wx/wx.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "canvas.h"
#include "gui.h"
#include "slice_picker.h"
#include "idlegrid/client/script.h"
#include "idlegrid/client/slice_view.h"
#include "idlegrid/client/wizard.h"

namespace idlegrid::client {

class WizardFrame;
constexpr double kLabelAlpha = 0.5;
constexpr double kPredictionAlpha = 0.3;
// Where the round's models are unsure (the review's map above one half): magenta, a class
// colour no default palette uses.
constexpr uint32_t kUncertainColour = 0xFF00FF;
constexpr double kUncertainAlpha = 0.35;

std::vector<uint32_t> ColoursOf(const Annotation& a);
wxString Thousands(int64_t n);

// Step 1: open a volume or the last session; choose the grid.
class StartPage : public wxPanel {
 public:
  StartPage(wxWindow* parent, WizardFrame* frame);
  void Update();  // grid state, session presence

 private:
  WizardFrame* frame_;
  wxStaticText* grid_;
  wxButton *open_, *reopen_;
};

// Steps 2 and 5: paint (and correct), with the viewer: Z slider, zoom/pan, contrast.
class PaintPage : public wxPanel {
 public:
  PaintPage(wxWindow* parent, WizardFrame* frame);
  void Load();  // a volume was opened
  void Detach();  // the session is about to go away: draw nothing from it
  void SetCorrecting(bool on);
  // Whether the candidates should train on a denoised copy (offered for noisy volumes).
  bool DenoiseFirst() const { return denoise_first_->IsShown() && denoise_first_->GetValue(); }
  bool correcting() const { return correcting_; }
  void ShowSlice(int64_t z);
  int64_t slice() const { return z_; }
  Status AddClass(const std::string& name);
  void SelectClass(uint8_t value);
  enum class Tool { kBrush, kEraser, kAccept };
  void SetTool(Tool t);
  void SetRadius(double r);
  // What a finished drag does (also called by scripts): paint, erase or accept the prediction.
  Status ApplyStroke(const std::vector<Point>& path);
  void Undo();
  void Redo();
  void AutoContrast();
  void Zoom(double f) { canvas_->ZoomBy(f); }
  void ForgetPredictions();  // and the round's review: a new round, or a new volume
  // Goes to the reviewed slice the models are most unsure of after the one shown (where to
  // correct next). UNAVAILABLE while the review is being fetched, NOT_FOUND without one.
  Status GoMostUncertain();
  // The chosen model's prediction of slice z (nullptr until fetched).
  const Volume* Prediction(int64_t z) const;
  void RequestPrediction();
  void RefreshAll();
  void UpdateCounter();

 private:
  void ShowPicture();
  void AfterChange(const Patch& p);
  void LoadReview();
  const Volume* UncertainMask(int64_t z);  // the review's map of z above one half, or nullptr

  WizardFrame* frame_;
  SliceCanvas* canvas_;
  SlicePicker* picker_;
  wxSlider *level_, *width_, *radius_;
  wxStaticText *counter_, *advice_, *title_;
  wxGauge* goal_;
  wxListBox* classes_;
  wxRadioBox* tool_;
  wxCheckBox *show_prediction_, *show_uncertain_, *denoise_first_;
  wxButton *train_, *retrain_, *apply_, *next_uncertain_;
  int64_t z_ = 0;
  Window window_, range_;
  std::shared_ptr<const Volume> slice_;
  bool correcting_ = false, fetching_ = false;
  std::map<int64_t, Volume> predictions_;  // by slice, of the chosen model
  enum class ReviewState { kNone, kLoading, kLoaded, kAbsent } review_state_ = ReviewState::kNone;
  RoundReview review_;
  std::map<int64_t, Volume> uncertain_;  // by reviewed slice: 1 where the map is above one half
  double last_stroke_s_ = -1;
};

// Step 3: candidates training (and retraining) with each one's progress.
class TrainPage : public wxPanel {
 public:
  TrainPage(wxWindow* parent, WizardFrame* frame);
  void Start(const wxString& title, const std::vector<std::string>& names);
  void ShowStatus(const Json& job);

 private:
  WizardFrame* frame_;
  wxStaticText *title_, *overall_;
  wxFlexGridSizer* rows_;
  std::vector<wxStaticText*> names_, states_;
  std::vector<wxGauge*> gauges_;
  std::vector<std::string> candidate_names_;
};

// Step 4: every candidate on the same slice, side by side, synchronised; pick one.
class ComparePage : public wxPanel {
 public:
  ComparePage(wxWindow* parent, WizardFrame* frame);
  void Load(std::vector<Candidate> candidates);
  void ShowSlice(int64_t z);
  Status Choose(const std::string& name_or_best);
  bool ready() const { return !fetching_ && shown_z_ == z_; }

 private:
  void Draw();
  WizardFrame* frame_;
  std::vector<Candidate> candidates_;
  std::vector<SliceCanvas*> canvases_;
  std::vector<wxButton*> choose_;
  wxGridSizer* grid_;
  SlicePicker* picker_;
  int64_t z_ = 0, shown_z_ = -1;
  bool fetching_ = false;
  std::shared_ptr<const Volume> slice_;
  std::vector<Volume> predictions_;
};

// Step 6: the whole volume segmented: slice view and the two orthogonal views; export.
// What the Apply page shows, read off the UI thread: the segmentation's slices on demand and
// overviews of the volume and of the segmentation (reduced in-plane alike, within
// kOverviewBytes) for the XZ and YZ views, so that neither is ever whole in memory.
struct ApplyViews {
  std::shared_ptr<LazyStack> labels;
  Overview image, segmentation;
};
constexpr int64_t kOverviewBytes = int64_t{128} << 20;
StatusOr<ApplyViews> PrepareApplyViews(const LazyStack& image, const std::string& labels_tif,
                                       const std::function<bool(int64_t done, int64_t total)>& progress = {});

class ApplyPage : public wxPanel {
 public:
  ApplyPage(wxWindow* parent, WizardFrame* frame);
  void Start(const std::string& job_id);
  void ShowStatus(const Json& job);
  Status Load(ApplyViews views);  // the fetched result
  Status Export(const std::string& labels_tif, const std::string& model_pt);
  const std::string& job() const { return job_; }

 private:
  void Draw();
  WizardFrame* frame_;
  std::string job_;
  wxStaticText* status_;
  wxGauge* gauge_;
  SliceCanvas *xy_, *xz_, *yz_;
  SlicePicker* z_;
  wxSlider *y_, *x_;
  wxButton *export_labels_, *export_model_;
  ApplyViews views_;
  std::vector<uint32_t> colours_;
  std::shared_ptr<const Volume> plane_keep_[3];  // the label planes the canvases draw
};

// Step 7: self-supervised denoising, before and after side by side.
class DenoisePage : public wxPanel {
 public:
  DenoisePage(wxWindow* parent, WizardFrame* frame);
  void Start(const std::string& job_id);
  void ShowStatus(const Json& job);
  Status Load(const std::string& denoised_tif);

 private:
  void Draw();
  WizardFrame* frame_;
  wxStaticText* status_;
  wxGauge* gauge_;
  SliceCanvas *before_, *after_;
  SlicePicker* z_;
  wxButton* save_;
  std::unique_ptr<LazyStack> denoised_;  // read a slice at a time, as shown
  std::string path_;
};

// Server URL, fingerprint and token of a lab's grid, tested before they are kept.
class GridDialog : public wxDialog {
 public:
  GridDialog(wxWindow* parent, const Json& grid);
  Json Grid() const;

 private:
  wxTextCtrl *url_, *fingerprint_, *token_;
  wxStaticText* result_;
};

class WizardFrame : public wxFrame {
 public:
  explicit WizardFrame(const GuiOptions& options);
  ~WizardFrame() override;

  Wizard* wizard() { return wizard_.get(); }
  bool busy() const { return busy_; }
  // The labels are being read by the task thread (sent to the grid): no painting meanwhile.
  bool labels_locked() const { return labels_locked_; }
  bool scripted() const { return !script_.empty(); }
  // Runs `work` on the task thread; `done` gets its status on the UI thread. False (and
  // nothing runs) while another task runs.
  bool RunTask(const wxString& what, std::function<Status()> work, std::function<void(const Status&)> done = {});
  // On the task thread: polls a job until it ends, posting each status to `progress`.
  Status WaitJob(const std::string& id, std::function<void(const Json&)> progress);
  // A problem the user must see: a message box (a scripted run prints it and fails).
  void Fail(const wxString& what, const Status& s);
  void Say(const wxString& s) { SetStatusText(s); }

  // The flow (buttons, menus and scripts call these).
  void StartGrid(const Json& grid);
  // A new session on `path`; an HDF5 dataset is converted on the task thread first.
  Status OpenVolume(const std::string& path);
  Status OpenStaged(const std::string& path);  // a TIFF stack (or Stage()'s), at once
  // The file dialog (TIFF or HDF5; for an HDF5 file with several image datasets, which one),
  // then OpenVolume; failures are shown.
  void AskAndOpenVolume();
  Status ReopenSession();
  void ConnectGrid();
  Status TrainCandidates();
  void ShowCandidates();
  void Chosen();
  Status Retrain();
  Status Apply();
  Status Denoise();
  void GoPaint();
  void Autosave();
  // Follows a submitted job to its page: progress, then its result.
  Status Follow(const SessionJob& job);

  // Script replay and screenshots.
  void RunScript();
  Status Screenshot(const std::string& name);
  int exit_code() const { return exit_code_; }

  PaintPage* paint() { return paint_; }
  ComparePage* compare() { return compare_; }
  ApplyPage* apply() { return apply_; }

 private:
  enum Page { kStart, kPaint, kTrain, kCompare, kApply, kDenoise };
  void Go(Page p);
  Status Submit(const std::string& purpose);  // "candidates", "apply" or "denoise", then Follow
  void ScriptTick();
  // kOk: done; UNAVAILABLE: not yet (the page is still loading): try again on the next tick.
  Status ScriptStep(const Json& cmd);

  std::unique_ptr<Wizard> wizard_;
  WizardOptions options_;
  wxSimplebook* book_;
  wxStaticText* steps_;
  StartPage* start_;
  PaintPage* paint_;
  TrainPage* train_;
  ComparePage* compare_;
  ApplyPage* apply_;
  DenoisePage* denoise_;
  std::thread task_;
  bool busy_ = false, labels_locked_ = false;
  std::atomic<bool> stop_{false};
  wxTimer autosave_, script_timer_;
  // Scripts.
  std::vector<ScriptLine> script_;
  std::string script_path_, shots_;
  size_t next_ = 0;
  int exit_code_ = 0;
  bool in_tick_ = false, step_started_task_ = false, shot_drawn_ = false;
  std::string pending_open_;
  double script_t0_ = 0, step_t0_ = 0;
};

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_WIZARD_PAGES_H_
