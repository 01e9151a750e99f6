// idlegrid-tray: the node's face on a desktop. A thin wx shell over client/tray_model.h and
// the node daemon's status socket: a tray icon (idle / working / paused / error / offline),
// a menu (pause or resume, run only when idle, preferences, status window, quit) and a
// status window with the current unit and its progress. Starts the daemon when it is not
// running (if this machine is enrolled).
//
//   idlegrid-tray [--no-start] [--screenshot FILE]
// --screenshot shows the status window, saves it as a PNG after the first update and exits
// (used by the tests under Xvfb); it prints whether a system tray was available.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <wx/cmdline.h>
#include <wx/dcmemory.h>
#include <wx/spinctrl.h>
#include <wx/taskbar.h>
#include <wx/tokenzr.h>
#include <wx/wx.h>

#include "idlegrid/client/node.h"
#include "idlegrid/client/tray_model.h"
#include "idlegrid/shared/config.h"
#include "idlegrid/shared/files.h"

namespace {

using idlegrid::Json;
using idlegrid::client::TrayState;
using idlegrid::client::TrayView;

std::string SocketPath(const idlegrid::Paths& paths) {
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (runtime != nullptr && runtime[0] == '/' && std::getenv("IDLEGRID_CACHE_DIR") == nullptr) {
    return std::string(runtime) + "/idlegrid-node.sock";
  }
  return paths.cache_dir + "/node.sock";
}

// A round state icon drawn in code: no image files to install.
wxBitmap StateIcon(TrayState s, int size = 32) {
  wxColour fill;
  switch (s) {
    case TrayState::kWorking: fill = wxColour(0, 158, 115); break;
    case TrayState::kPaused: fill = wxColour(230, 159, 0); break;
    case TrayState::kError: fill = wxColour(213, 94, 0); break;
    case TrayState::kIdle: fill = wxColour(86, 180, 233); break;
    case TrayState::kOffline: fill = wxColour(150, 150, 150); break;
  }
  wxBitmap bmp(size, size, 32);
  wxMemoryDC dc(bmp);
  dc.SetBackground(*wxTRANSPARENT_BRUSH);
  dc.SetBackground(wxBrush(wxColour(40, 40, 40)));
  dc.Clear();
  dc.SetBrush(wxBrush(fill));
  dc.SetPen(wxPen(*wxWHITE, 2));
  dc.DrawCircle(size / 2, size / 2, size / 2 - 2);
  if (s == TrayState::kPaused) {
    dc.SetBrush(*wxWHITE_BRUSH);
    dc.SetPen(*wxTRANSPARENT_PEN);
    dc.DrawRectangle(size / 2 - 6, size / 4 + 1, 4, size / 2 - 2);
    dc.DrawRectangle(size / 2 + 2, size / 4 + 1, 4, size / 2 - 2);
  }
  dc.SelectObject(wxNullBitmap);
  return bmp;
}

class StatusFrame : public wxFrame {
 public:
  StatusFrame() : wxFrame(nullptr, wxID_ANY, "idlegrid node", wxDefaultPosition, wxSize(460, 360)) {
    auto* panel = panel_ = new wxPanel(this);
    auto* sizer = new wxBoxSizer(wxVERTICAL);
    auto* top = new wxBoxSizer(wxHORIZONTAL);
    icon_ = new wxStaticBitmap(panel, wxID_ANY, StateIcon(TrayState::kOffline));
    headline_ = new wxStaticText(panel, wxID_ANY, "Asking the node...");
    headline_->SetFont(headline_->GetFont().Bold().Larger());
    top->Add(icon_, 0, wxALL | wxALIGN_CENTER_VERTICAL, 8);
    top->Add(headline_, 1, wxALL | wxALIGN_CENTER_VERTICAL, 8);
    sizer->Add(top, 0, wxEXPAND);
    gauge_ = new wxGauge(panel, wxID_ANY, 1000);
    sizer->Add(gauge_, 0, wxEXPAND | wxLEFT | wxRIGHT, 12);
    grid_ = new wxFlexGridSizer(2, 4, 16);
    grid_->AddGrowableCol(1);
    for (int i = 0; i < 9; ++i) {
      labels_.push_back(new wxStaticText(panel, wxID_ANY, ""));
      values_.push_back(new wxStaticText(panel, wxID_ANY, ""));
      grid_->Add(labels_.back());
      grid_->Add(values_.back(), 1, wxEXPAND);
    }
    sizer->Add(grid_, 1, wxEXPAND | wxALL, 12);
    panel->SetSizer(sizer);
  }
  void ShowView(const TrayView& v) {
    icon_->SetBitmap(StateIcon(v.state));
    headline_->SetLabel(wxString::FromUTF8(v.headline));
    gauge_->SetValue(static_cast<int>(1000 * v.progress));
    for (size_t i = 0; i < labels_.size(); ++i) {
      labels_[i]->SetLabel(i < v.details.size() ? wxString::FromUTF8(v.details[i].first) : "");
      values_[i]->SetLabel(i < v.details.size() ? wxString::FromUTF8(v.details[i].second) : "");
    }
    panel_->Layout();  // the labels' widths changed
  }

 private:
  wxPanel* panel_;
  wxStaticBitmap* icon_;
  wxStaticText* headline_;
  wxGauge* gauge_;
  wxFlexGridSizer* grid_;
  std::vector<wxStaticText*> labels_, values_;
};

// Edits the "policy" object of config.json (the daemon reads it when it starts).
class PreferencesDialog : public wxDialog {
 public:
  PreferencesDialog(wxWindow* parent, Json policy) : wxDialog(parent, wxID_ANY, "idlegrid preferences") {
    auto* sizer = new wxBoxSizer(wxVERTICAL);
    const wxString modes[] = {"Always", "Only when I am away", "Only in time windows"};
    mode_ = new wxRadioBox(this, wxID_ANY, "Compute", wxDefaultPosition, wxDefaultSize, 3, modes, 1);
    const std::string m = policy.value("mode", std::string("idle"));
    mode_->SetSelection(m == "always" ? 0 : m == "windows" ? 2 : 1);
    sizer->Add(mode_, 0, wxEXPAND | wxALL, 8);
    auto* grid = new wxFlexGridSizer(2, 6, 12);
    grid->Add(new wxStaticText(this, wxID_ANY, "Away for (minutes)"));
    idle_ = new wxSpinCtrl(this, wxID_ANY, "", wxDefaultPosition, wxDefaultSize, wxSP_ARROW_KEYS, 0, 600,
                           static_cast<int>(policy.value("idle_after_s", int64_t{300}) / 60));
    grid->Add(idle_);
    grid->Add(new wxStaticText(this, wxID_ANY, "CPU threads (0: all)"));
    threads_ = new wxSpinCtrl(this, wxID_ANY, "", wxDefaultPosition, wxDefaultSize, wxSP_ARROW_KEYS, 0, 1024,
                              static_cast<int>(policy.value("max_threads", int64_t{0})));
    grid->Add(threads_);
    grid->Add(new wxStaticText(this, wxID_ANY, "Time windows"));
    std::string windows;
    if (policy.contains("windows") && policy["windows"].is_array()) {
      for (const Json& w : policy["windows"]) windows += (windows.empty() ? "" : " ") + w.get<std::string>();
    }
    windows_ = new wxTextCtrl(this, wxID_ANY, wxString::FromUTF8(windows.empty() ? "18:00-08:00" : windows));
    grid->Add(windows_, 1, wxEXPAND);
    sizer->Add(grid, 0, wxEXPAND | wxALL, 8);
    gpu_ = new wxCheckBox(this, wxID_ANY, "Use GPUs");
    gpu_->SetValue(policy.value("use_gpu", true));
    sizer->Add(gpu_, 0, wxALL, 8);
    sizer->Add(new wxStaticText(this, wxID_ANY, "Changes apply when the node next starts."), 0, wxALL, 8);
    sizer->Add(CreateStdDialogButtonSizer(wxOK | wxCANCEL), 0, wxEXPAND | wxALL, 8);
    SetSizerAndFit(sizer);
  }
  Json Policy() const {
    const int m = mode_->GetSelection();
    Json windows = Json::array();
    wxStringTokenizer tok(windows_->GetValue(), " ,");
    while (tok.HasMoreTokens()) windows.push_back(tok.GetNextToken().ToStdString());
    return {{"mode", m == 0 ? "always" : m == 2 ? "windows" : "idle"}, {"idle_after_s", idle_->GetValue() * 60},
            {"max_threads", threads_->GetValue()}, {"use_gpu", gpu_->GetValue()}, {"windows", windows}};
  }

 private:
  wxRadioBox* mode_;
  wxSpinCtrl *idle_, *threads_;
  wxTextCtrl* windows_;
  wxCheckBox* gpu_;
};

class TrayApp;

class Tray : public wxTaskBarIcon {
 public:
  explicit Tray(TrayApp* app) : app_(app) {}
  wxMenu* CreatePopupMenu() override;

 private:
  TrayApp* app_;
};

enum { kPause = wxID_HIGHEST + 1, kOnlyIdle, kPrefs, kShow };

class TrayApp : public wxApp {
 public:
  bool OnInit() override;
  int OnExit() override {
    if (tray_) {
      tray_->RemoveIcon();
      delete tray_;
    }
    return 0;
  }
  void OnInitCmdLine(wxCmdLineParser& p) override {
    p.AddSwitch("", "no-start", "do not start the node daemon");
    p.AddOption("", "screenshot", "save the status window as PNG and exit");
  }
  bool OnCmdLineParsed(wxCmdLineParser& p) override {
    no_start_ = p.Found("no-start");
    wxString shot;
    if (p.Found("screenshot", &shot)) screenshot_ = shot.ToStdString();
    return true;
  }

  const TrayView& view() const { return view_; }
  bool only_idle() const { return policy_ == "idle"; }
  void Refresh();
  void Command(const std::string& cmd) {
    idlegrid::client::QueryNode(socket_, cmd).status().IgnoreError();
    Refresh();
  }
  void ShowStatus() {
    frame_->Show();
    frame_->Raise();
  }
  void EditPreferences();

 private:
  void StartDaemon();
  void SaveScreenshot();

  idlegrid::Paths paths_;
  std::string socket_, screenshot_, policy_;
  bool no_start_ = false, started_ = false;
  Tray* tray_ = nullptr;
  StatusFrame* frame_ = nullptr;
  wxTimer timer_;
  TrayView view_;
  int ticks_ = 0;
};

wxMenu* Tray::CreatePopupMenu() {
  auto* menu = new wxMenu;
  menu->Append(kShow, "Status...");
  menu->Append(kPause, wxString::FromUTF8(app_->view().pause_label));
  menu->AppendCheckItem(kOnlyIdle, "Run only when I am away")->Check(app_->only_idle());
  menu->Append(kPrefs, "Preferences...");
  menu->AppendSeparator();
  menu->Append(wxID_EXIT, "Quit (the node keeps running)");
  menu->Bind(wxEVT_MENU, [this](wxCommandEvent& e) {
    switch (e.GetId()) {
      case kShow: app_->ShowStatus(); break;
      case kPause: app_->Command(app_->view().paused ? "resume" : "pause"); break;
      case kOnlyIdle: app_->Command(app_->only_idle() ? "policy always" : "policy idle"); break;
      case kPrefs: app_->EditPreferences(); break;
      case wxID_EXIT: app_->ExitMainLoop(); break;
    }
  });
  return menu;
}

bool TrayApp::OnInit() {
  if (!wxApp::OnInit()) return false;
  wxInitAllImageHandlers();
  idlegrid::StatusOr<idlegrid::Paths> paths = idlegrid::ResolvePaths();
  if (!paths.ok()) {
    wxMessageBox(wxString::FromUTF8(paths.status().message()), "idlegrid");
    return false;
  }
  paths_ = *paths;
  socket_ = SocketPath(paths_);
  frame_ = new StatusFrame();
  frame_->Bind(wxEVT_CLOSE_WINDOW, [this](wxCloseEvent& e) {
    if (e.CanVeto() && tray_ != nullptr && wxTaskBarIcon::IsAvailable()) {
      frame_->Hide();  // the tray keeps running
      e.Veto();
    } else {
      e.Skip();
      ExitMainLoop();
    }
  });
  const bool tray_available = wxTaskBarIcon::IsAvailable();
  if (tray_available) {
    tray_ = new Tray(this);
    tray_->Bind(wxEVT_TASKBAR_LEFT_DCLICK, [this](wxTaskBarIconEvent&) { ShowStatus(); });
  }
  if (!screenshot_.empty()) std::printf("system tray available: %s\n", tray_available ? "yes" : "no");
  if (!tray_available || !screenshot_.empty()) ShowStatus();
  timer_.Bind(wxEVT_TIMER, [this](wxTimerEvent&) { Refresh(); });
  timer_.Start(1000);
  Refresh();
  return true;
}

void TrayApp::StartDaemon() {
  started_ = true;
  if (no_start_) return;
  if (!wxFileExists(wxString::FromUTF8(paths_.config_dir + "/node.json"))) return;  // not enrolled
  const std::string dir = idlegrid::ExecutableDir();
  const std::string node = dir + "/idlegrid-node", log = paths_.cache_dir + "/node.log";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();  // outlives the tray
    if (::fork() != 0) ::_exit(0);
    FILE* f = std::freopen(log.c_str(), "a", stdout);
    if (f != nullptr) ::dup2(::fileno(f), 2);
    ::execl(node.c_str(), node.c_str(), "run", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  if (pid > 0) ::waitpid(pid, nullptr, 0);
}

void TrayApp::Refresh() {
  idlegrid::StatusOr<Json> status = idlegrid::client::QueryNode(socket_, "status");
  if (!status.ok() && !started_) StartDaemon();
  view_ = idlegrid::client::ViewOf(status);
  policy_ = status.ok() ? status->value("policy", std::string()) : "";
  if (tray_ != nullptr) {
    wxIcon icon;
    icon.CopyFromBitmap(StateIcon(view_.state, 22));
    tray_->SetIcon(icon, wxString::FromUTF8(view_.tooltip));
  }
  frame_->ShowView(view_);
  if (!screenshot_.empty() && ++ticks_ >= 2) SaveScreenshot();
}

void TrayApp::EditPreferences() {
  idlegrid::StatusOr<Json> config = idlegrid::LoadConfig(paths_.config_file());
  Json c = config.ok() ? *config : Json::object();
  PreferencesDialog dialog(frame_, c.value("policy", Json::object()));
  if (dialog.ShowModal() != wxID_OK) return;
  c["policy"] = dialog.Policy();
  idlegrid::EnsureDirs(paths_).IgnoreError();
  idlegrid::Status st = idlegrid::SaveConfig(paths_.config_file(), c);
  if (!st.ok()) wxMessageBox(wxString::FromUTF8(st.message()), "idlegrid", wxICON_ERROR);
}

void TrayApp::SaveScreenshot() {
  frame_->Update();
  wxClientDC dc(frame_);
  const wxSize size = frame_->GetClientSize();
  wxBitmap bmp(size.x, size.y);
  wxMemoryDC mem(bmp);
  mem.Blit(0, 0, size.x, size.y, &dc, 0, 0);
  mem.SelectObject(wxNullBitmap);
  const bool bmp_file = screenshot_.size() > 4 && screenshot_.substr(screenshot_.size() - 4) == ".bmp";
  const wxBitmapType type = bmp_file ? wxBITMAP_TYPE_BMP : wxBITMAP_TYPE_PNG;
  const bool ok = bmp.ConvertToImage().SaveFile(wxString::FromUTF8(screenshot_), type);
  // The whole screen too, with the tray host and its icon.
  wxScreenDC screen;
  const wxSize ss = screen.GetSize();
  wxBitmap whole(ss.x, ss.y);
  wxMemoryDC wm(whole);
  wm.Blit(0, 0, ss.x, ss.y, &screen, 0, 0);
  wm.SelectObject(wxNullBitmap);
  whole.ConvertToImage().SaveFile(wxString::FromUTF8(screenshot_ + ".screen.png"), wxBITMAP_TYPE_PNG);
  std::printf("state %s; screenshot %s: %s (%dx%d)\n", idlegrid::client::TrayStateName(view_.state),
              screenshot_.c_str(), ok ? "saved" : "FAILED", size.x, size.y);
  std::fflush(stdout);
  screenshot_.clear();
  ExitMainLoop();
}

}  // namespace

wxIMPLEMENT_APP(TrayApp);
