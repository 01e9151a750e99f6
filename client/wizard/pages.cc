#include "pages.h"

#include <wx/colordlg.h>
#include <wx/filedlg.h>
#include <wx/statline.h>
#include <wx/textdlg.h>

#include <chrono>
#include <cmath>

#include "idlegrid/models/strategy.h"
#include "idlegrid/shared/api_client.h"
#include "idlegrid/shared/tiff_io.h"

namespace idlegrid::client {
namespace {

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

wxString U(const std::string& s) { return wxString::FromUTF8(s); }
// "Slice 3 of 9" -> "slice 3 of 9", for the middle of a sentence.
std::string LowerFirst(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

wxStaticText* Heading(wxWindow* parent, const wxString& text) {
  auto* t = new wxStaticText(parent, wxID_ANY, text);
  t->SetFont(t->GetFont().Bold().Scaled(1.3f));
  return t;
}

// A job's progress: a gauge and a line of text.
wxSizer* ProgressRow(wxWindow* parent, wxGauge** gauge, wxStaticText** status) {
  auto* row = new wxBoxSizer(wxHORIZONTAL);
  *gauge = new wxGauge(parent, wxID_ANY, 1000, wxDefaultPosition, wxSize(300, 16));
  *status = new wxStaticText(parent, wxID_ANY, "");
  row->Add(*gauge, 0, wxALIGN_CENTER_VERTICAL | wxRIGHT, 8);
  row->Add(*status, 1, wxALIGN_CENTER_VERTICAL);
  return row;
}

// Mean progress of each chain's units ("c0", "c1", ...), in chain order.
std::vector<std::pair<std::string, double>> ChainProgress(const Json& job) {
  std::vector<std::pair<std::string, double>> out;
  std::map<std::string, std::pair<double, int>> sums;
  for (const Json& u : job["units"]) {
    const std::string chain = u.value("chain", std::string());
    if (chain.empty() || u.value("kind", std::string()) != "train_epochs") continue;  // a candidate's chain
    if (!sums.count(chain)) out.emplace_back(chain, 0);
    const double p = u.value("state", std::string()) == "done" ? 1.0 : u.value("progress", 0.0);
    sums[chain].first += p;
    sums[chain].second += 1;
  }
  for (auto& [chain, p] : out) p = sums[chain].first / std::max(1, sums[chain].second);
  return out;
}

}  // namespace

std::vector<uint32_t> ColoursOf(const Annotation& a) {
  std::vector<uint32_t> c;
  for (const LabelClass& lc : a.classes()) c.push_back(lc.rgb);
  // Predictions may hold classes the user has not named (a volume reopened, say).
  for (int v = static_cast<int>(c.size()) + 1; v <= 16; ++v) c.push_back(Annotation::DefaultColour(static_cast<uint8_t>(v)));
  return c;
}

wxString Thousands(int64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return U(s);
}

// ---------------------------------------------------------------------------------------
StartPage::StartPage(wxWindow* parent, WizardFrame* frame) : wxPanel(parent), frame_(frame) {
  auto* s = new wxBoxSizer(wxVERTICAL);
  s->Add(Heading(this, "Segment a volume from a few painted strokes"), 0, wxALL, 16);
  s->Add(new wxStaticText(this, wxID_ANY,
                          "Open a 3D stack (TIFF) or a single image, paint a few strokes of each material on one slice,\n"
                          "and idlegrid trains several networks for you - no parameters to choose. Pick the best, correct\n"
                          "it where it is wrong, and apply it to the whole volume. Denoising needs no strokes at all."),
         0, wxLEFT | wxRIGHT, 16);
  auto* buttons = new wxBoxSizer(wxHORIZONTAL);
  open_ = new wxButton(this, wxID_ANY, "Open a volume...");
  reopen_ = new wxButton(this, wxID_ANY, "Continue the last session");
  auto* grid = new wxButton(this, wxID_ANY, "Grid...");
  buttons->Add(open_, 0, wxRIGHT, 8);
  buttons->Add(reopen_, 0, wxRIGHT, 8);
  buttons->Add(grid, 0);
  s->Add(buttons, 0, wxALL, 16);
  grid_ = new wxStaticText(this, wxID_ANY, "Starting this computer's grid...");
  s->Add(grid_, 0, wxLEFT | wxRIGHT, 16);
  SetSizer(s);
  open_->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) { frame_->AskAndOpenVolume(); });
  reopen_->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) {
    Status st = frame_->ReopenSession();
    if (!st.ok()) frame_->Fail("Cannot continue the last session", st);
  });
  grid->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) { frame_->ConnectGrid(); });
}

void StartPage::Update() {
  Wizard* w = frame_->wizard();
  const bool ready = w != nullptr && !frame_->busy();
  open_->Enable(ready);
  reopen_->Enable(ready && wxFileExists(U(w->options().session_dir + "/session.json")));
  if (w == nullptr) return;
  grid_->SetLabel(w->options().local_grid
                      ? U("Grid: this computer only (" + std::to_string(w->options().local_nodes) +
                          (w->options().local_nodes == 1 ? " local node)" : " local nodes)"))
                      : U("Grid: " + w->options().server));
  Layout();
}

// ---------------------------------------------------------------------------------------
PaintPage::PaintPage(wxWindow* parent, WizardFrame* frame) : wxPanel(parent), frame_(frame) {
  auto* top = new wxBoxSizer(wxHORIZONTAL);
  auto* left = new wxBoxSizer(wxVERTICAL);
  title_ = Heading(this, "Paint a few strokes of each class");
  left->Add(title_, 0, wxALL, 8);
  canvas_ = new SliceCanvas(this, wxSize(480, 420));
  canvas_->painting = true;
  left->Add(canvas_, 1, wxEXPAND | wxLEFT | wxRIGHT, 8);
  picker_ = new SlicePicker(this);
  left->Add(picker_, 0, wxEXPAND | wxALL, 8);
  top->Add(left, 1, wxEXPAND);

  auto* side = new wxBoxSizer(wxVERTICAL);
  side->Add(new wxStaticText(this, wxID_ANY, "Classes"), 0, wxTOP, 8);
  classes_ = new wxListBox(this, wxID_ANY, wxDefaultPosition, wxSize(270, 90));
  side->Add(classes_, 0, wxEXPAND | wxTOP, 4);
  auto* crow = new wxBoxSizer(wxHORIZONTAL);
  auto* add = new wxButton(this, wxID_ANY, "Add", wxDefaultPosition, wxDefaultSize, wxBU_EXACTFIT);
  auto* rename = new wxButton(this, wxID_ANY, "Rename", wxDefaultPosition, wxDefaultSize, wxBU_EXACTFIT);
  auto* colour = new wxButton(this, wxID_ANY, "Colour", wxDefaultPosition, wxDefaultSize, wxBU_EXACTFIT);
  crow->Add(add, 0, wxRIGHT, 4);
  crow->Add(rename, 0, wxRIGHT, 4);
  crow->Add(colour, 0);
  side->Add(crow, 0, wxTOP, 4);
  const wxString tools[] = {"Brush", "Eraser", "Accept prediction"};
  tool_ = new wxRadioBox(this, wxID_ANY, "Tool", wxDefaultPosition, wxDefaultSize, 3, tools, 2);
  tool_->Enable(2, false);
  side->Add(tool_, 0, wxEXPAND | wxTOP, 8);
  auto* brow = new wxBoxSizer(wxHORIZONTAL);
  brow->Add(new wxStaticText(this, wxID_ANY, "Brush"), 0, wxALIGN_CENTER_VERTICAL | wxRIGHT, 4);
  radius_ = new wxSlider(this, wxID_ANY, 3, 1, 40, wxDefaultPosition, wxSize(110, -1));
  brow->Add(radius_, 1, wxALIGN_CENTER_VERTICAL);
  auto* undo = new wxButton(this, wxID_UNDO, "Undo", wxDefaultPosition, wxDefaultSize, wxBU_EXACTFIT);
  auto* redo = new wxButton(this, wxID_REDO, "Redo", wxDefaultPosition, wxDefaultSize, wxBU_EXACTFIT);
  brow->Add(undo, 0, wxLEFT, 4);
  brow->Add(redo, 0, wxLEFT, 2);
  side->Add(brow, 0, wxEXPAND | wxTOP, 4);
  auto* crow2 = new wxBoxSizer(wxHORIZONTAL);
  crow2->Add(new wxStaticText(this, wxID_ANY, "Contrast"), 0, wxALIGN_CENTER_VERTICAL | wxRIGHT, 4);
  level_ = new wxSlider(this, wxID_ANY, 500, 0, 1000, wxDefaultPosition, wxSize(70, -1));
  width_ = new wxSlider(this, wxID_ANY, 1000, 1, 1000, wxDefaultPosition, wxSize(70, -1));
  level_->SetToolTip("Level: the gray value in the middle of the window");
  width_->SetToolTip("Width: the range of gray values shown from black to white");
  auto* autoc = new wxButton(this, wxID_ANY, "Auto", wxDefaultPosition, wxDefaultSize, wxBU_EXACTFIT);
  crow2->Add(level_, 1, wxALIGN_CENTER_VERTICAL);
  crow2->Add(width_, 1, wxALIGN_CENTER_VERTICAL);
  crow2->Add(autoc, 0, wxLEFT, 4);
  side->Add(crow2, 0, wxEXPAND | wxTOP, 4);
  show_prediction_ = new wxCheckBox(this, wxID_ANY, "Show the chosen model's prediction");
  show_prediction_->SetValue(true);
  show_prediction_->Hide();
  side->Add(show_prediction_, 0, wxTOP, 8);
  show_uncertain_ = new wxCheckBox(this, wxID_ANY, "Mark where the models are unsure");
  show_uncertain_->SetValue(true);
  show_uncertain_->SetForegroundColour(wxColour(0xA0, 0x00, 0xA0));
  show_uncertain_->Hide();
  side->Add(show_uncertain_, 0, wxTOP, 4);
  next_uncertain_ = new wxButton(this, wxID_ANY, "Go to the most uncertain slice");
  next_uncertain_->SetToolTip("The slices the models are most unsure of, one after another: correct there first");
  next_uncertain_->Hide();
  side->Add(next_uncertain_, 0, wxEXPAND | wxTOP, 4);
  side->Add(new wxStaticLine(this), 0, wxEXPAND | wxTOP | wxBOTTOM, 8);
  counter_ = new wxStaticText(this, wxID_ANY, "");
  side->Add(counter_, 0, wxEXPAND);
  goal_ = new wxGauge(this, wxID_ANY, 50000, wxDefaultPosition, wxSize(-1, 14));
  side->Add(goal_, 0, wxEXPAND | wxTOP, 4);
  advice_ = new wxStaticText(this, wxID_ANY, "", wxDefaultPosition, wxSize(270, 36));
  side->Add(advice_, 0, wxEXPAND | wxTOP, 4);
  denoise_first_ = new wxCheckBox(this, wxID_ANY, "Denoise first");
  denoise_first_->SetToolTip("This volume looks noisy: one job denoises it (no strokes needed), then the candidates "
                             "train on and segment the denoised volume");
  denoise_first_->Hide();
  side->Add(denoise_first_, 0, wxTOP, 8);
  train_ = new wxButton(this, wxID_ANY, "Train candidates >");
  retrain_ = new wxButton(this, wxID_ANY, "Retrain with corrections");
  apply_ = new wxButton(this, wxID_ANY, "Apply to the whole volume >");
  auto* denoise = new wxButton(this, wxID_ANY, "Denoise instead (no strokes)");
  side->Add(train_, 0, wxEXPAND | wxTOP, 8);
  side->Add(retrain_, 0, wxEXPAND | wxTOP, 4);
  side->Add(apply_, 0, wxEXPAND | wxTOP, 4);
  side->Add(denoise, 0, wxEXPAND | wxTOP, 4);
  retrain_->Hide();
  apply_->Hide();
  top->Add(side, 0, wxEXPAND | wxRIGHT | wxBOTTOM, 8);
  SetSizer(top);

  canvas_->on_stroke = [this](const std::vector<Point>& path) {
    Status st = ApplyStroke(path);
    if (!st.ok()) frame_->Say(U(st.message()));
  };
  picker_->on_change = [this](int64_t z) { ShowSlice(z); };
  auto contrast = [this](wxCommandEvent&) {
    const double span = range_.hi - range_.lo;
    const double level = range_.lo + span * level_->GetValue() / 1000.0, width = span * width_->GetValue() / 1000.0;
    window_ = {level - width / 2, level + width / 2};
    ShowPicture();
  };
  level_->Bind(wxEVT_SLIDER, contrast);
  width_->Bind(wxEVT_SLIDER, contrast);
  autoc->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) { AutoContrast(); });
  classes_->Bind(wxEVT_LISTBOX, [this](wxCommandEvent&) { SelectClass(static_cast<uint8_t>(classes_->GetSelection() + 1)); });
  add->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) {
    wxTextEntryDialog d(this, "Name of the new class (a material, a phase, \"background\"...)", "Add a class");
    if (d.ShowModal() != wxID_OK) return;
    Status st = AddClass(d.GetValue().utf8_string());
    if (!st.ok()) frame_->Fail("Cannot add this class", st);
  });
  rename->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) {
    const int i = classes_->GetSelection();
    if (i < 0 || frame_->wizard() == nullptr || !frame_->wizard()->is_open() || frame_->labels_locked()) return;
    Annotation& a = frame_->wizard()->annotation();
    wxTextEntryDialog d(this, "New name", "Rename class", U(a.classes()[static_cast<size_t>(i)].name));
    if (d.ShowModal() != wxID_OK) return;
    Status st = a.RenameClass(static_cast<uint8_t>(i + 1), d.GetValue().utf8_string());
    if (!st.ok()) frame_->Fail("Cannot rename this class", st);
    UpdateCounter();
  });
  colour->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) {
    const int i = classes_->GetSelection();
    if (i < 0 || frame_->wizard() == nullptr || !frame_->wizard()->is_open() || frame_->labels_locked()) return;
    Annotation& a = frame_->wizard()->annotation();
    const uint32_t c = a.classes()[static_cast<size_t>(i)].rgb;
    wxColourData data;
    data.SetColour(wxColour(c >> 16 & 0xFF, c >> 8 & 0xFF, c & 0xFF));
    wxColourDialog d(this, &data);
    if (d.ShowModal() != wxID_OK) return;
    const wxColour n = d.GetColourData().GetColour();
    a.SetColour(static_cast<uint8_t>(i + 1), static_cast<uint32_t>(n.Red() << 16 | n.Green() << 8 | n.Blue())).IgnoreError();
    SelectClass(static_cast<uint8_t>(i + 1));
    RefreshAll();
  });
  tool_->Bind(wxEVT_RADIOBOX, [this](wxCommandEvent&) { SetTool(static_cast<Tool>(tool_->GetSelection())); });
  radius_->Bind(wxEVT_SLIDER, [this](wxCommandEvent&) { canvas_->brush_radius = radius_->GetValue(); });
  undo->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) { Undo(); });
  redo->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) { Redo(); });
  show_prediction_->Bind(wxEVT_CHECKBOX, [this](wxCommandEvent&) { ShowPicture(); });
  show_uncertain_->Bind(wxEVT_CHECKBOX, [this](wxCommandEvent&) { ShowPicture(); });
  next_uncertain_->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) {
    Status st = GoMostUncertain();
    if (!st.ok()) frame_->Say(U(st.message()));
  });
  train_->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) {
    Status st = frame_->TrainCandidates();
    if (!st.ok()) frame_->Fail("Cannot train yet", st);
  });
  retrain_->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) {
    Status st = frame_->Retrain();
    if (!st.ok()) frame_->Fail("Cannot retrain", st);
  });
  apply_->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) {
    Status st = frame_->Apply();
    if (!st.ok()) frame_->Fail("Cannot apply the model", st);
  });
  denoise->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) {
    Status st = frame_->Denoise();
    if (!st.ok()) frame_->Fail("Cannot denoise", st);
  });
}

void PaintPage::Load() {
  Wizard* w = frame_->wizard();
  const VolumeShape& s = w->stack().shape();
  picker_->SetSeries({s.z, w->stack().frames()});
  predictions_.clear();
  z_ = -1;
  ShowSlice(std::clamp<int64_t>(w->session().slice > 0 ? w->session().slice : s.z / 2, 0, s.z - 1));
  AutoContrast();
  canvas_->FitView();
  if (!w->annotation().classes().empty()) SelectClass(1);
  // A noisy volume: offer to denoise it first (a few slices read; nothing else waits on it).
  StatusOr<double> noise = w->NoiseLevel();
  const bool noisy = noise.ok() && *noise >= models::kDenoiseFirstNoiseLevel;
  if (noisy) denoise_first_->SetLabel(wxString::Format("Denoise first (noise about %.0f%% of the range)", 100 * *noise));
  denoise_first_->SetValue(false);  // an offer: the user decides
  denoise_first_->Show(noisy);
  Layout();
  UpdateCounter();
}

void PaintPage::Detach() {
  canvas_->SetLayers({});
  slice_.reset();
  predictions_.clear();
}

void PaintPage::SetCorrecting(bool on) {
  correcting_ = on;
  title_->SetLabel(on ? "Correct: accept where the prediction is right, paint where it is wrong"
                      : "Paint a few strokes of each class");
  tool_->Enable(2, on);
  show_prediction_->Show(on);
  show_uncertain_->Show(on && review_state_ == ReviewState::kLoaded);
  next_uncertain_->Show(on && review_state_ == ReviewState::kLoaded);
  retrain_->Show(on);
  apply_->Show(on);
  train_->SetLabel(on ? "Train new candidates" : "Train candidates >");
  if (on) SetTool(Tool::kAccept);
  Layout();
  UpdateCounter();
}

void PaintPage::ShowSlice(int64_t z) {
  Wizard* w = frame_->wizard();
  if (w == nullptr || !w->is_open()) return;
  z = std::clamp<int64_t>(z, 0, w->stack().shape().z - 1);
  StatusOr<std::shared_ptr<const Volume>> slice = w->stack().Slice(z);
  if (!slice.ok()) {
    frame_->Fail("Cannot read this slice", slice.status());
    return;
  }
  slice_ = *slice;
  z_ = z;
  w->session().slice = z;
  picker_->SetGlobal(z);
  ShowPicture();
  if (correcting_ && Prediction(z) == nullptr) RequestPrediction();
}

void PaintPage::AutoContrast() {
  if (!slice_) return;
  range_ = FullRange(*slice_);
  const Window full = AutoWindow(*slice_, 0, 0, 100);
  if (slice_->dtype() != DType::kFloat32) range_ = {std::min(range_.lo, full.lo), std::max(full.hi, range_.lo + 1)};
  window_ = AutoWindow(*slice_);
  const double span = std::max(1e-9, range_.hi - range_.lo);
  level_->SetValue(static_cast<int>(std::lround(1000 * ((window_.lo + window_.hi) / 2 - range_.lo) / span)));
  width_->SetValue(std::max(1, static_cast<int>(std::lround(1000 * (window_.hi - window_.lo) / span))));
  ShowPicture();
}

void PaintPage::ShowPicture() {
  Wizard* w = frame_->wizard();
  if (!slice_ || w == nullptr || !w->is_open()) return;
  const VolumeShape& s = slice_->shape();
  std::vector<LabelLayer> layers;
  const std::vector<uint32_t> colours = ColoursOf(w->annotation());
  const Volume* p = Prediction(z_);
  if (correcting_ && show_prediction_->GetValue() && p != nullptr) layers.push_back({p, 0, colours, kPredictionAlpha});
  layers.push_back({&w->annotation().labels(), z_, colours, kLabelAlpha});
  const Volume* unsure = correcting_ && show_uncertain_->GetValue() ? UncertainMask(z_) : nullptr;
  if (unsure != nullptr) layers.push_back({unsure, 0, {kUncertainColour}, kUncertainAlpha});
  canvas_->SetLayers(std::move(layers));
  canvas_->SetPicture(s.x, s.y, RenderGray(*slice_, 0, window_));
}

void PaintPage::RefreshAll() { ShowPicture(); }

Status PaintPage::AddClass(const std::string& name) {
  Wizard* w = frame_->wizard();
  if (w == nullptr || !w->is_open()) return FailedPreconditionError("open a volume first");
  if (frame_->labels_locked()) return UnavailableError("your labels are being sent to the grid; a moment");
  IDLEGRID_ASSIGN_OR_RETURN(uint8_t v, w->annotation().AddClass(name));
  UpdateCounter();
  SelectClass(v);
  return Status::Ok();
}

void PaintPage::SelectClass(uint8_t value) {
  Wizard* w = frame_->wizard();
  if (w == nullptr || value == 0 || value > w->annotation().classes().size()) return;
  if (static_cast<unsigned>(value) > classes_->GetCount()) UpdateCounter();
  classes_->SetSelection(value - 1);
  canvas_->brush_rgb = w->annotation().classes()[value - 1].rgb;
  if (tool_->GetSelection() == static_cast<int>(Tool::kAccept) && !correcting_) SetTool(Tool::kBrush);
}

void PaintPage::SetTool(Tool t) {
  tool_->SetSelection(static_cast<int>(t));
  if (t == Tool::kEraser) canvas_->brush_rgb = 0xFFFFFF;
  if (t == Tool::kAccept) canvas_->brush_rgb = 0x00FF80;
  if (t == Tool::kBrush) SelectClass(static_cast<uint8_t>(classes_->GetSelection() + 1));
}

void PaintPage::SetRadius(double r) {
  radius_->SetValue(static_cast<int>(std::lround(r)));
  canvas_->brush_radius = r;
}

Status PaintPage::ApplyStroke(const std::vector<Point>& path) {
  Wizard* w = frame_->wizard();
  if (w == nullptr || !w->is_open()) return FailedPreconditionError("open a volume first");
  if (frame_->labels_locked()) return UnavailableError("your labels are being sent to the grid; paint again in a moment");
  Annotation& a = w->annotation();
  StatusOr<Patch> patch = Patch{};
  switch (static_cast<Tool>(tool_->GetSelection())) {
    case Tool::kBrush: {
      const int sel = classes_->GetSelection();
      if (sel < 0) return FailedPreconditionError("add a class first (Add, under Classes)");
      patch = a.Stroke(z_, path, canvas_->brush_radius, static_cast<uint8_t>(sel + 1));
      break;
    }
    case Tool::kEraser: patch = a.Stroke(z_, path, canvas_->brush_radius, 0); break;
    case Tool::kAccept: {
      const Volume* p = Prediction(z_);
      if (p == nullptr) return UnavailableError("the prediction of this slice is still being computed");
      if (p->dtype() != DType::kUInt8 || p->shape().y != a.shape().y || p->shape().x != a.shape().x) {
        return DataLossError("the prediction does not fit this volume");
      }
      patch = a.Accept(z_, path, canvas_->brush_radius, p->data<uint8_t>());
      break;
    }
  }
  if (!patch.ok()) return patch.status();
  const double now = NowSeconds();
  w->session().painting_seconds += last_stroke_s_ < 0 ? 2.0 : std::min(20.0, now - last_stroke_s_);
  last_stroke_s_ = now;
  AfterChange(*patch);
  return Status::Ok();
}

void PaintPage::AfterChange(const Patch& p) {
  if (!p.empty() && p.z == z_) canvas_->RefreshBox(p.y0, p.y0 + p.height, p.x0, p.x0 + p.width);
  UpdateCounter();
}

void PaintPage::Undo() {
  Wizard* w = frame_->wizard();
  if (w == nullptr || !w->is_open() || frame_->labels_locked() || !w->annotation().CanUndo()) return;
  w->annotation().Undo();
  ShowPicture();  // the undone stroke may be on another slice; a slice renders in milliseconds
  UpdateCounter();
}

void PaintPage::Redo() {
  Wizard* w = frame_->wizard();
  if (w == nullptr || !w->is_open() || frame_->labels_locked() || !w->annotation().CanRedo()) return;
  w->annotation().Redo();
  ShowPicture();
  UpdateCounter();
}

void PaintPage::UpdateCounter() {
  Wizard* w = frame_->wizard();
  if (w == nullptr || !w->is_open()) return;
  const Annotation& a = w->annotation();
  const int sel = classes_->GetSelection();
  classes_->Clear();
  for (size_t i = 0; i < a.classes().size(); ++i) {
    classes_->Append(U(a.classes()[i].name) + "  -  " + Thousands(a.counts()[i + 1]) + " px");
  }
  if (sel >= 0 && sel < static_cast<int>(a.classes().size())) classes_->SetSelection(sel);
  const int64_t goal = correcting_ ? 1000000 : 50000, total = a.labelled();
  const double minutes = w->session().painting_seconds / 60;
  goal_->SetRange(static_cast<int>(goal));
  goal_->SetValue(static_cast<int>(std::min(goal, total)));
  counter_->SetLabel(Thousands(total) + " of ~" + Thousands(goal) + " labelled pixels\n" +
                     wxString::Format("%.1f minutes painting", minutes));
  wxString advice;
  if (correcting_) {
    advice = "Accept where the prediction is right, paint where it is wrong, then retrain.";
  } else if (a.classes().size() < 2) {
    advice = "Add a class for each material (at least two), then paint a few strokes of each.";
  } else if (minutes >= 5 || total >= goal) {
    advice = "That is enough (about 5 minutes): train the candidates now.";
  } else {
    advice = "Paint strokes of each class, near the edges between them. About 5 minutes is enough.";
  }
  advice_->SetLabel(advice);
  advice_->Wrap(270);
  train_->Enable(a.classes().size() >= 2 && total > 0);
  Layout();
}

const Volume* PaintPage::Prediction(int64_t z) const {
  auto it = predictions_.find(z);
  return it == predictions_.end() ? nullptr : &it->second;
}

void PaintPage::ForgetPredictions() {
  predictions_.clear();
  review_state_ = ReviewState::kNone;
  review_ = RoundReview();
  uncertain_.clear();
  picker_->SetUncertainty({});
  show_uncertain_->Hide();
  next_uncertain_->Hide();
}

Status PaintPage::GoMostUncertain() {
  if (review_state_ == ReviewState::kNone || review_state_ == ReviewState::kLoading) {
    if (review_state_ == ReviewState::kNone) RequestPrediction();
    return UnavailableError("the round's review is on its way");
  }
  if (review_state_ == ReviewState::kAbsent || review_.where.empty()) {
    return NotFoundError("this round has no review of where the models are unsure");
  }
  ShowSlice(review_.Next(z_));
  return Status::Ok();
}

const Volume* PaintPage::UncertainMask(int64_t z) {
  if (review_state_ != ReviewState::kLoaded || review_.uncertainty.count(z) == 0) return nullptr;
  auto it = uncertain_.find(z);
  if (it != uncertain_.end()) return &it->second;
  StatusOr<Volume> map = review_.MapOf(z);
  if (!map.ok()) return nullptr;
  for (int64_t i = 0; i < map->shape().elements(); ++i) map->data<uint8_t>()[i] = map->data<uint8_t>()[i] > 127;
  return &(uncertain_[z] = std::move(*map));
}

// The latest round's review, fetched on the task thread once per round.
void PaintPage::LoadReview() {
  Wizard* w = frame_->wizard();
  auto result = std::make_shared<StatusOr<RoundReview>>(NotFoundError(""));
  review_state_ = ReviewState::kLoading;
  fetching_ = frame_->RunTask(
      "Reading where the models are unsure",
      [w, result] {
        *result = w->LatestReview();
        return result->ok() || result->status().code() == StatusCode::kNotFound ? Status::Ok() : result->status();
      },
      [this, result](const Status& st) {
        fetching_ = false;
        if (!st.ok()) {
          review_state_ = ReviewState::kAbsent;
          return frame_->Fail("Cannot read the round's review", st);
        }
        review_state_ = result->ok() ? ReviewState::kLoaded : ReviewState::kAbsent;
        if (result->ok()) {
          review_ = std::move(**result);
          picker_->SetUncertainty(review_.uncertainty);
          frame_->Say(wxString::Format("The models are most unsure of slice %lld: the button takes you there",
                                       static_cast<long long>(review_.where.empty() ? 0 : review_.where[0] + 1)));
        }
        SetCorrecting(correcting_);  // shows the review's controls
        ShowPicture();
        RequestPrediction();
      });
  if (!fetching_) review_state_ = ReviewState::kNone;
}

void PaintPage::RequestPrediction() {
  Wizard* w = frame_->wizard();
  if (!correcting_ || fetching_ || frame_->busy() || w == nullptr || !w->is_open() || !slice_) return;
  if (review_state_ == ReviewState::kNone) return LoadReview();
  if (w->session().chosen_model.empty() || Prediction(z_) != nullptr) return;
  const int64_t z = z_;
  auto result = std::make_shared<Volume>();
  frame_->Say(wxString::Format("Predicting slice %lld with the chosen model...", static_cast<long long>(z + 1)));
  fetching_ = frame_->RunTask(
      "",  // the status bar already says what is being predicted
      [w, z, result] {
        IDLEGRID_ASSIGN_OR_RETURN(BlobRef model, w->ChosenModel());
        IDLEGRID_ASSIGN_OR_RETURN(*result, w->Predict(model, z, z + 1));
        return Status::Ok();
      },
      [this, z, result](const Status& st) {
        fetching_ = false;
        if (!st.ok()) return frame_->Fail("Cannot show the prediction", st);
        predictions_[z] = std::move(*result);
        frame_->Say("");
        if (z == z_) ShowPicture();
        if (z_ != z && correcting_) RequestPrediction();
      });
}

// ---------------------------------------------------------------------------------------
TrainPage::TrainPage(wxWindow* parent, WizardFrame* frame) : wxPanel(parent), frame_(frame) {
  auto* s = new wxBoxSizer(wxVERTICAL);
  title_ = Heading(this, "Training candidates");
  s->Add(title_, 0, wxALL, 16);
  overall_ = new wxStaticText(this, wxID_ANY, "");
  s->Add(overall_, 0, wxLEFT | wxRIGHT, 16);
  rows_ = new wxFlexGridSizer(3, 8, 16);
  rows_->AddGrowableCol(1);
  s->Add(rows_, 0, wxEXPAND | wxALL, 16);
  s->Add(new wxStaticText(this, wxID_ANY,
                          "Each candidate is a different network, configured from your data with no parameters to choose.\n"
                          "The grid trains them side by side; you may close the wizard and continue the session later."),
         0, wxLEFT | wxRIGHT, 16);
  SetSizer(s);
}

void TrainPage::Start(const wxString& title, const std::vector<std::string>& names) {
  title_->SetLabel(title);
  rows_->Clear(true);
  names_.clear(), states_.clear(), gauges_.clear();
  candidate_names_ = names;
  overall_->SetLabel("Submitting...");
  Layout();
}

void TrainPage::ShowStatus(const Json& job) {
  const auto chains = ChainProgress(job);
  while (names_.size() < chains.size()) {
    const size_t i = names_.size();
    names_.push_back(new wxStaticText(this, wxID_ANY, i < candidate_names_.size() ? U(candidate_names_[i])
                                                                                   : wxString::Format("candidate %zu", i + 1)));
    gauges_.push_back(new wxGauge(this, wxID_ANY, 1000, wxDefaultPosition, wxSize(320, 16)));
    states_.push_back(new wxStaticText(this, wxID_ANY, "", wxDefaultPosition, wxSize(220, -1)));
    rows_->Add(names_.back(), 0, wxALIGN_CENTER_VERTICAL);
    rows_->Add(gauges_.back(), 1, wxEXPAND | wxALIGN_CENTER_VERTICAL);
    rows_->Add(states_.back(), 0, wxALIGN_CENTER_VERTICAL);
  }
  std::map<std::string, std::pair<std::string, double>> ranked;  // chain -> name, score
  if (job["summary"].is_object() && job["summary"].contains("ranking")) {
    for (const Json& r : job["summary"]["ranking"]) {
      ranked[r.value("chain", std::string())] = {r.value("name", std::string()), r["score"].is_number() ? r["score"].get<double>() : -1};
    }
  }
  for (size_t i = 0; i < chains.size(); ++i) {
    gauges_[i]->SetValue(static_cast<int>(1000 * chains[i].second));
    auto it = ranked.find(chains[i].first);
    if (it != ranked.end()) {
      names_[i]->SetLabel(U(it->second.first));
      states_[i]->SetLabel(wxString::Format("done, validation Dice %.3f", it->second.second));
    } else {
      states_[i]->SetLabel(chains[i].second >= 1 ? wxString("trained") : wxString::Format("%.0f%%", 100 * chains[i].second));
    }
  }
  int reviewed = 0, reviews = 0;  // the round's review: where the candidates are unsure
  for (const Json& u : job["units"]) {
    if (u.value("kind", std::string()) != "review_slices") continue;
    ++reviews;
    reviewed += u.value("state", std::string()) == "done";
  }
  overall_->SetLabel(wxString::Format("Job %s: %s, %.0f%% overall%s", U(job.value("job_id", std::string())),
                                      U(job.value("state", std::string())), 100 * job.value("progress", 0.0),
                                      reviews == 0 ? wxString() : wxString::Format(" - finding where they are unsure: %d of %d parts", reviewed, reviews)));
  Layout();
}

// ---------------------------------------------------------------------------------------
ComparePage::ComparePage(wxWindow* parent, WizardFrame* frame) : wxPanel(parent), frame_(frame) {
  auto* s = new wxBoxSizer(wxVERTICAL);
  s->Add(Heading(this, "Compare the candidates on the same slice and pick the best"), 0, wxALL, 8);
  grid_ = new wxGridSizer(2, 6, 6);
  s->Add(grid_, 1, wxEXPAND | wxLEFT | wxRIGHT, 8);
  // The sliders ask for predictions when released, not at every step they pass.
  picker_ = new SlicePicker(this, /*on_release_only=*/true);
  s->Add(picker_, 0, wxEXPAND | wxALL, 8);
  SetSizer(s);
  picker_->on_change = [this](int64_t z) { ShowSlice(z); };
}

void ComparePage::Load(std::vector<Candidate> candidates) {
  candidates_ = std::move(candidates);
  predictions_.clear();
  shown_z_ = -1;
  grid_->Clear(true);
  canvases_.clear();
  choose_.clear();
  grid_->SetCols(candidates_.size() > 4 ? 3 : 2);
  for (size_t i = 0; i < candidates_.size(); ++i) {
    auto* cell = new wxBoxSizer(wxVERTICAL);
    auto* c = new SliceCanvas(this, wxSize(220, 170));
    auto* b = new wxButton(this, wxID_ANY, U("Choose " + candidates_[i].name));
    cell->Add(c, 1, wxEXPAND);
    cell->Add(b, 0, wxEXPAND | wxTOP, 2);
    grid_->Add(cell, 1, wxEXPAND);
    c->on_view = [this](SliceCanvas* from) {
      for (SliceCanvas* o : canvases_) {
        if (o != from) o->SetView(from->zoom(), from->ox(), from->oy());
      }
    };
    const std::string name = candidates_[i].name;
    b->Bind(wxEVT_BUTTON, [this, name](wxCommandEvent&) {
      Status st = Choose(name);
      if (!st.ok()) frame_->Fail("Cannot choose this candidate", st);
    });
    canvases_.push_back(c);
    choose_.push_back(b);
  }
  if (Wizard* w = frame_->wizard(); w != nullptr && w->is_open()) {
    picker_->SetSeries({w->stack().shape().z, w->stack().frames()});
  }
  Layout();
}

void ComparePage::ShowSlice(int64_t z) {
  Wizard* w = frame_->wizard();
  if (w == nullptr || !w->is_open() || candidates_.empty()) return;
  z_ = std::clamp<int64_t>(z, 0, w->stack().shape().z - 1);
  picker_->SetGlobal(z_);
  if (fetching_ || shown_z_ == z_) return;
  std::vector<BlobRef> models;
  for (const Candidate& c : candidates_) models.push_back(c.model);
  auto result = std::make_shared<std::vector<Volume>>();
  const int64_t at = z_;
  frame_->Say(U("Each candidate segments " + LowerFirst(picker_->series().Describe(at)) + "..."));
  fetching_ = frame_->RunTask(
      "",  // the status bar already says what is being predicted
      [w, models, at, result] {
        IDLEGRID_ASSIGN_OR_RETURN(*result, w->PredictAll(models, at, at + 1));
        return Status::Ok();
      },
      [this, at, result](const Status& st) {
        fetching_ = false;
        if (!st.ok()) return frame_->Fail("The candidates could not segment this slice", st);
        predictions_ = std::move(*result);
        shown_z_ = at;
        frame_->Say("");
        Draw();
        if (z_ != at) ShowSlice(z_);
      });
}

void ComparePage::Draw() {
  Wizard* w = frame_->wizard();
  StatusOr<std::shared_ptr<const Volume>> slice = w->stack().Slice(shown_z_);
  if (!slice.ok()) return frame_->Fail("Cannot read this slice", slice.status());
  const VolumeShape& s = (*slice)->shape();
  const std::vector<uint8_t> gray = RenderGray(**slice, 0, AutoWindow(**slice));
  const std::vector<uint32_t> colours = ColoursOf(w->annotation());
  for (size_t i = 0; i < canvases_.size() && i < predictions_.size(); ++i) {
    canvases_[i]->SetLayers({{&predictions_[i], 0, colours, kLabelAlpha}});
    canvases_[i]->SetPicture(s.x, s.y, gray);
    const Candidate& c = candidates_[i];
    // Why it ranks here: validation on the painted slice, and (after the round's review) how
    // much it agrees with the others on the rest of the volume.
    const wxString agrees = c.agreement < 0 ? wxString() : wxString::Format(", agrees %.0f%% elsewhere", 100 * c.agreement);
    canvases_[i]->SetCaption(wxString::Format("#%zu %s - validation Dice %.3f%s", i + 1, U(c.name), c.score, agrees));
    canvases_[i]->SetToolTip(U(c.why));
  }
}

Status ComparePage::Choose(const std::string& name_or_best) {
  for (const Candidate& c : candidates_) {
    if (name_or_best == "best" || c.name == name_or_best) {
      IDLEGRID_RETURN_IF_ERROR(frame_->wizard()->Choose(c));
      frame_->Say(U("Chose " + c.name));
      frame_->Chosen();
      return Status::Ok();
    }
  }
  return NotFoundError("no candidate named " + name_or_best);
}

// ---------------------------------------------------------------------------------------
ApplyPage::ApplyPage(wxWindow* parent, WizardFrame* frame) : wxPanel(parent), frame_(frame) {
  auto* s = new wxBoxSizer(wxVERTICAL);
  s->Add(Heading(this, "The whole volume, segmented"), 0, wxALL, 8);
  s->Add(ProgressRow(this, &gauge_, &status_), 0, wxEXPAND | wxLEFT | wxRIGHT, 8);
  auto* views = new wxFlexGridSizer(3, 6, 6);
  views->AddGrowableRow(0);
  for (int i = 0; i < 3; ++i) views->AddGrowableCol(i);
  xy_ = new SliceCanvas(this, wxSize(220, 220));
  xz_ = new SliceCanvas(this, wxSize(220, 220));
  yz_ = new SliceCanvas(this, wxSize(220, 220));
  z_ = new SlicePicker(this);
  y_ = new wxSlider(this, wxID_ANY, 0, 0, 1);
  x_ = new wxSlider(this, wxID_ANY, 0, 0, 1);
  for (SliceCanvas* c : {xy_, xz_, yz_}) views->Add(c, 1, wxEXPAND);
  views->Add(z_, 0, wxEXPAND);
  for (wxSlider* sl : {y_, x_}) views->Add(sl, 0, wxEXPAND | wxALIGN_TOP);
  s->Add(views, 1, wxEXPAND | wxALL, 8);
  auto* brow = new wxBoxSizer(wxHORIZONTAL);
  export_labels_ = new wxButton(this, wxID_ANY, "Export labels (TIFF)...");
  export_model_ = new wxButton(this, wxID_ANY, "Export model...");
  auto* back = new wxButton(this, wxID_ANY, "< Back to correcting");
  brow->Add(export_labels_, 0, wxRIGHT, 8);
  brow->Add(export_model_, 0, wxRIGHT, 8);
  brow->Add(back, 0);
  s->Add(brow, 0, wxALL, 8);
  SetSizer(s);
  export_labels_->Enable(false);
  export_model_->Enable(false);
  for (wxSlider* sl : {y_, x_}) sl->Bind(wxEVT_SLIDER, [this](wxCommandEvent&) { Draw(); });
  z_->on_change = [this](int64_t) { Draw(); };
  back->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) { frame_->GoPaint(); });
  auto save = [this](bool labels) {
    Wizard* w = frame_->wizard();
    const std::string image = w->session().image_path;
    const std::string base = image.substr(0, image.rfind('.') == std::string::npos ? image.size() : image.rfind('.'));
    wxFileDialog d(this, labels ? "Export the labels" : "Export the model", "",
                   U(base.substr(base.rfind('/') + 1) + (labels ? "-labels.tif" : "-model.pt")),
                   labels ? "TIFF stack (*.tif)|*.tif|HDF5, dataset /labels (*.h5)|*.h5" : "idlegrid model (*.pt)|*.pt",
                   wxFD_SAVE | wxFD_OVERWRITE_PROMPT);
    if (d.ShowModal() != wxID_OK) return;
    const std::string path = d.GetPath().utf8_string();
    Status st = labels ? Export(path, "") : Export("", path);
    if (!st.ok()) frame_->Fail("Cannot export", st);
  };
  export_labels_->Bind(wxEVT_BUTTON, [save](wxCommandEvent&) { save(true); });
  export_model_->Bind(wxEVT_BUTTON, [save](wxCommandEvent&) { save(false); });
}

StatusOr<ApplyViews> PrepareApplyViews(const LazyStack& image, const std::string& labels_tif,
                                       const std::function<bool(int64_t done, int64_t total)>& progress) {
  ApplyViews v;
  IDLEGRID_ASSIGN_OR_RETURN(std::unique_ptr<LazyStack> labels, LazyStack::Open(labels_tif));
  v.labels = std::move(labels);
  const VolumeShape& s = image.shape();
  const VolumeShape& ls = v.labels->shape();
  if (ls.z != s.z || ls.y != s.y || ls.x != s.x) {
    return DataLossError(labels_tif + " is " + ls.ToString() + ", the volume " + s.ToString() +
                         ": the segmentation does not fit the volume");
  }
  const int64_t f = OverviewFactor(s, image.dtype(), kOverviewBytes);
  // Two passes over the files, each a slice at a time: progress counts both.
  auto half = [&](int64_t offset) {
    return [&progress, offset](int64_t done, int64_t total) { return !progress || progress(offset + done, 2 * total); };
  };
  IDLEGRID_ASSIGN_OR_RETURN(v.image, BuildOverview(image.path(), f, half(0)));
  IDLEGRID_ASSIGN_OR_RETURN(v.segmentation, BuildOverview(labels_tif, f, half(s.z)));
  return v;
}

void ApplyPage::Start(const std::string& job_id) {
  job_ = job_id;
  views_ = ApplyViews();
  for (auto& k : plane_keep_) k.reset();
  gauge_->SetValue(0);
  status_->SetLabel(U("Segmenting the whole volume (job " + job_id + ")..."));
  export_labels_->Enable(false);
  export_model_->Enable(false);
}

void ApplyPage::ShowStatus(const Json& job) {
  int done = 0, total = 0;
  for (const Json& u : job["units"]) ++total, done += u.value("state", std::string()) == "done";
  gauge_->SetValue(static_cast<int>(1000 * job.value("progress", 0.0)));
  status_->SetLabel(wxString::Format("Job %s: %s - %d of %d slabs done", U(job_), U(job.value("state", std::string())), done, total));
}

Status ApplyPage::Load(ApplyViews views) {
  views_ = std::move(views);
  const VolumeShape& s = views_.labels->shape();
  colours_ = ColoursOf(frame_->wizard()->annotation());
  for (auto [slider, n] : {std::pair{y_, s.y}, std::pair{x_, s.x}}) {
    slider->SetRange(0, static_cast<int>(std::max<int64_t>(1, n - 1)));
    slider->Enable(n > 1);
  }
  const SeriesIndex series{s.z, frame_->wizard()->stack().frames()};
  z_->SetSeries(series);
  z_->SetGlobal(series.Global(0, series.depth() / 2));
  y_->SetValue(static_cast<int>(s.y / 2));
  x_->SetValue(static_cast<int>(s.x / 2));
  gauge_->SetValue(1000);
  const int64_t f = views_.image.factor;
  status_->SetLabel(U("Done: " + std::to_string(s.z) + " slices segmented" +
                      (series.frames > 1 ? " (" + std::to_string(series.frames) + " time points)" : "") +
                      ". Left: slice (XY); middle: XZ; right: YZ" +
                      (f > 1 ? " (every " + std::to_string(f) + "th row and column)." : ".")));
  export_labels_->Enable(true);
  export_model_->Enable(true);
  Draw();
  return Status::Ok();
}

void ApplyPage::Draw() {
  Wizard* w = frame_->wizard();
  if (!views_.labels || w == nullptr || !w->is_open()) return;
  const VolumeShape& ls = views_.labels->shape();
  const int64_t z = std::min<int64_t>(z_->global(), ls.z - 1), y = std::min<int64_t>(y_->GetValue(), ls.y - 1),
                x = std::min<int64_t>(x_->GetValue(), ls.x - 1);
  // XZ and YZ through the shown time point only, from the overviews.
  const SeriesIndex& series = z_->series();
  const int64_t first = z - series.Slice(z), in_frame = series.Slice(z), f = views_.image.factor;
  struct View {
    SliceCanvas* canvas;
    Plane plane;
    int64_t index, cx, cy;
    const char* name;
  };
  for (const View& v : {View{xy_, Plane::kXY, z, x, y, "XY, slice"}, View{xz_, Plane::kXZ, y, x / f, in_frame, "XZ, row"},
                        View{yz_, Plane::kYZ, x, y / f, in_frame, "YZ, column"}}) {
    // XY at full resolution, a slice of each file; XZ and YZ from the overviews.
    auto plane_of = [&](const Overview& o, LazyStack& full) -> StatusOr<std::shared_ptr<const Volume>> {
      if (v.plane == Plane::kXY) return full.Slice(z);
      IDLEGRID_ASSIGN_OR_RETURN(Volume p, o.Through(v.plane, v.index, first, first + series.depth()));
      return std::make_shared<const Volume>(std::move(p));
    };
    StatusOr<std::shared_ptr<const Volume>> gray = plane_of(views_.image, w->stack());
    StatusOr<std::shared_ptr<const Volume>> lab = plane_of(views_.segmentation, *views_.labels);
    if (!gray.ok() || !lab.ok()) return frame_->Fail("Cannot show the result", gray.ok() ? lab.status() : gray.status());
    const Volume& g = **gray;
    v.canvas->SetLayers({{lab->get(), 0, colours_, kLabelAlpha}});
    v.canvas->SetPicture(g.shape().x, g.shape().y, RenderGray(g, 0, AutoWindow(g)));
    v.canvas->SetCaption(wxString::Format("%s %lld", v.name, static_cast<long long>((v.plane == Plane::kXY ? in_frame : v.index) + 1)));
    v.canvas->SetCrosshair(v.cx, v.cy);
    plane_keep_[v.plane == Plane::kXY ? 0 : v.plane == Plane::kXZ ? 1 : 2] = *lab;
  }
}

Status ApplyPage::Export(const std::string& labels_tif, const std::string& model_pt) {
  Wizard* w = frame_->wizard();
  if (job_.empty()) return FailedPreconditionError("apply the model first");
  // Both downloads are small next to the volume; the labels come from the grid as stitched.
  IDLEGRID_RETURN_IF_ERROR(w->Export(job_, labels_tif, model_pt));
  frame_->Say(U("Exported " + labels_tif + (labels_tif.empty() || model_pt.empty() ? "" : " and ") + model_pt));
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
DenoisePage::DenoisePage(wxWindow* parent, WizardFrame* frame) : wxPanel(parent), frame_(frame) {
  auto* s = new wxBoxSizer(wxVERTICAL);
  s->Add(Heading(this, "Denoising (self-supervised: no strokes needed)"), 0, wxALL, 8);
  s->Add(ProgressRow(this, &gauge_, &status_), 0, wxEXPAND | wxLEFT | wxRIGHT, 8);
  auto* views = new wxBoxSizer(wxHORIZONTAL);
  before_ = new SliceCanvas(this, wxSize(300, 300));
  after_ = new SliceCanvas(this, wxSize(300, 300));
  views->Add(before_, 1, wxEXPAND | wxRIGHT, 6);
  views->Add(after_, 1, wxEXPAND);
  s->Add(views, 1, wxEXPAND | wxALL, 8);
  z_ = new SlicePicker(this);
  s->Add(z_, 0, wxEXPAND | wxLEFT | wxRIGHT, 8);
  auto* brow = new wxBoxSizer(wxHORIZONTAL);
  save_ = new wxButton(this, wxID_ANY, "Save the denoised volume...");
  auto* back = new wxButton(this, wxID_ANY, "< Back");
  brow->Add(save_, 0, wxRIGHT, 8);
  brow->Add(back, 0);
  s->Add(brow, 0, wxALL, 8);
  SetSizer(s);
  save_->Enable(false);
  z_->on_change = [this](int64_t) { Draw(); };
  back->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) { frame_->GoPaint(); });
  for (SliceCanvas* c : {before_, after_}) {
    c->on_view = [this](SliceCanvas* from) {
      SliceCanvas* other = from == before_ ? after_ : before_;
      other->SetView(from->zoom(), from->ox(), from->oy());
    };
  }
  save_->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) {
    wxFileDialog d(this, "Save the denoised volume", "", "denoised.tif", "TIFF stack (*.tif)|*.tif",
                   wxFD_SAVE | wxFD_OVERWRITE_PROMPT);
    if (d.ShowModal() != wxID_OK) return;
    if (!wxCopyFile(U(path_), d.GetPath())) frame_->Fail("Cannot save", IoError("copy to " + d.GetPath().utf8_string() + " failed"));
  });
}

void DenoisePage::Start(const std::string& job_id) {
  denoised_.reset();
  gauge_->SetValue(0);
  status_->SetLabel(U("Learning the noise from the volume itself (job " + job_id + ")..."));
  save_->Enable(false);
}

void DenoisePage::ShowStatus(const Json& job) {
  gauge_->SetValue(static_cast<int>(1000 * job.value("progress", 0.0)));
  status_->SetLabel(wxString::Format("Job %s: %s, stage %d of %d", U(job.value("job_id", std::string())),
                                     U(job.value("state", std::string())), job.value("stage", 1), job.value("stages", 1)));
}

Status DenoisePage::Load(const std::string& denoised_tif) {
  IDLEGRID_ASSIGN_OR_RETURN(denoised_, LazyStack::Open(denoised_tif));
  const VolumeShape& ds = denoised_->shape();
  const VolumeShape& s = frame_->wizard()->stack().shape();
  if (ds.z != s.z || ds.y != s.y || ds.x != s.x) {
    denoised_.reset();
    return DataLossError(denoised_tif + " is " + ds.ToString() + ", the volume " + s.ToString() +
                         ": the denoised volume does not fit it");
  }
  path_ = denoised_tif;
  const SeriesIndex series{ds.z, frame_->wizard()->stack().frames()};
  z_->SetSeries(series);
  z_->SetGlobal(series.Global(0, series.depth() / 2));
  gauge_->SetValue(1000);
  status_->SetLabel("Done. Left: as acquired; right: denoised (same contrast).");
  save_->Enable(true);
  Draw();
  return Status::Ok();
}

void DenoisePage::Draw() {
  Wizard* w = frame_->wizard();
  if (!denoised_ || w == nullptr || !w->is_open()) return;
  const int64_t z = std::min<int64_t>(z_->global(), denoised_->shape().z - 1);
  StatusOr<std::shared_ptr<const Volume>> before = w->stack().Slice(z);
  if (!before.ok()) return frame_->Fail("Cannot read this slice", before.status());
  StatusOr<std::shared_ptr<const Volume>> after = denoised_->Slice(z);
  if (!after.ok()) return frame_->Fail("Cannot read the denoised slice", after.status());
  const Window win = AutoWindow(**before);
  const VolumeShape& s = denoised_->shape();
  before_->SetPicture(s.x, s.y, RenderGray(**before, 0, win));
  after_->SetPicture(s.x, s.y, RenderGray(**after, 0, win));
  before_->SetCaption(U("Before - " + LowerFirst(z_->series().Describe(z))));
  after_->SetCaption("After (denoised)");
}

// ---------------------------------------------------------------------------------------
GridDialog::GridDialog(wxWindow* parent, const Json& grid) : wxDialog(parent, wxID_ANY, "Connect to a grid") {
  auto* s = new wxBoxSizer(wxVERTICAL);
  s->Add(new wxStaticText(this, wxID_ANY,
                          "Your lab's idlegrid server prints these when it starts (or ask its admin).\n"
                          "Leave the server empty to compute on this computer only."),
         0, wxALL, 8);
  auto* f = new wxFlexGridSizer(2, 6, 8);
  f->AddGrowableCol(1);
  url_ = new wxTextCtrl(this, wxID_ANY, U(grid.value("server", std::string())), wxDefaultPosition, wxSize(380, -1));
  fingerprint_ = new wxTextCtrl(this, wxID_ANY, U(grid.value("fingerprint", std::string())));
  token_ = new wxTextCtrl(this, wxID_ANY, U(grid.value("token", std::string())), wxDefaultPosition, wxDefaultSize, wxTE_PASSWORD);
  f->Add(new wxStaticText(this, wxID_ANY, "Server URL"));
  f->Add(url_, 1, wxEXPAND);
  f->Add(new wxStaticText(this, wxID_ANY, "Certificate fingerprint"));
  f->Add(fingerprint_, 1, wxEXPAND);
  f->Add(new wxStaticText(this, wxID_ANY, "Token"));
  f->Add(token_, 1, wxEXPAND);
  s->Add(f, 0, wxEXPAND | wxALL, 8);
  auto* test = new wxButton(this, wxID_ANY, "Test the connection");
  result_ = new wxStaticText(this, wxID_ANY, "");
  s->Add(test, 0, wxLEFT, 8);
  s->Add(result_, 0, wxEXPAND | wxALL, 8);
  s->Add(CreateStdDialogButtonSizer(wxOK | wxCANCEL), 0, wxEXPAND | wxALL, 8);
  SetSizerAndFit(s);
  test->Bind(wxEVT_BUTTON, [this](wxCommandEvent&) {
    const Json g = Grid();
    if (g["server"].get<std::string>().empty()) {
      result_->SetLabel("This computer only.");
      return;
    }
    HttpClientOptions h;
    h.base_url = g["server"];
    h.pinned_cert_sha256 = g["fingerprint"];
    h.bearer_token = g["token"];
    h.connect_timeout_ms = 5000;
    h.max_attempts = 1;
    wxBusyCursor busy;
    StatusOr<std::unique_ptr<ApiClient>> api = ApiClient::Create(h);
    StatusOr<Json> stats = api.ok() ? (*api)->Stats() : StatusOr<Json>(api.status());
    result_->SetLabel(stats.ok() ? U("Connected: " + stats->dump().substr(0, 120)) : U("Not connected: " + stats.status().message()));
    result_->Wrap(440);
    Fit();
  });
}

Json GridDialog::Grid() const {
  return {{"server", url_->GetValue().Strip(wxString::both).utf8_string()},
          {"fingerprint", fingerprint_->GetValue().Strip(wxString::both).utf8_string()},
          {"token", token_->GetValue().Strip(wxString::both).utf8_string()}};
}

}  // namespace idlegrid::client
