#include "slice_picker.h"

#include <wx/dcclient.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace idlegrid::client {

SlicePicker::SlicePicker(wxWindow* parent, bool on_release_only) : wxPanel(parent) {
  auto* s = new wxBoxSizer(wxVERTICAL);
  time_row_ = new wxBoxSizer(wxHORIZONTAL);
  time_ = new wxSlider(this, wxID_ANY, 0, 0, 1);
  time_text_ = new wxStaticText(this, wxID_ANY, "Time 1 of 1", wxDefaultPosition, wxSize(130, -1));
  time_row_->Add(time_, 1, wxEXPAND);
  time_row_->Add(time_text_, 0, wxALIGN_CENTER_VERTICAL | wxLEFT, 8);
  auto* slice_row = new wxBoxSizer(wxHORIZONTAL);
  slice_ = new wxSlider(this, wxID_ANY, 0, 0, 1);
  slice_text_ = new wxStaticText(this, wxID_ANY, "Slice 1 of 1", wxDefaultPosition, wxSize(130, -1));
  slice_row->Add(slice_, 1, wxEXPAND);
  slice_row->Add(slice_text_, 0, wxALIGN_CENTER_VERTICAL | wxLEFT, 8);
  strip_ = new wxWindow(this, wxID_ANY, wxDefaultPosition, wxSize(-1, 10));
  strip_->SetToolTip("How unsure the models are on each slice (dark red: most): click to go there");
  strip_->Bind(wxEVT_PAINT, [this](wxPaintEvent&) { PaintStrip(); });
  strip_->Bind(wxEVT_LEFT_DOWN, [this](wxMouseEvent& e) {
    const int w = std::max(1, strip_->GetClientSize().x);
    const int64_t first = series_.Global(series_.Time(global()), 0);
    SetGlobal(first + std::clamp<int64_t>(e.GetX() * series_.depth() / w, 0, series_.depth() - 1));
    Changed();
  });
  s->Add(time_row_, 0, wxEXPAND);
  s->Add(slice_row, 0, wxEXPAND);
  s->Add(strip_, 0, wxEXPAND | wxRIGHT, 138);  // under the slider, not its text
  SetSizer(s);
  s->Show(time_row_, false);
  s->Show(strip_, false);
  for (wxSlider* sl : {time_, slice_}) {
    if (on_release_only) {
      sl->Bind(wxEVT_SCROLL_CHANGED, [this](wxScrollEvent&) { Changed(); });
      sl->Bind(wxEVT_SCROLL_THUMBRELEASE, [this](wxScrollEvent&) { Changed(); });
      sl->Bind(wxEVT_SLIDER, [this](wxCommandEvent&) { ShowText(); });
    } else {
      sl->Bind(wxEVT_SLIDER, [this](wxCommandEvent&) { Changed(); });
    }
  }
}

void SlicePicker::SetSeries(SeriesIndex series) {
  const int64_t keep = global();
  series_ = series;
  time_->SetRange(0, static_cast<int>(std::max<int64_t>(1, series_.frames - 1)));
  slice_->SetRange(0, static_cast<int>(std::max<int64_t>(1, series_.depth() - 1)));
  slice_->Enable(series_.depth() > 1);
  GetSizer()->Show(time_row_, series_.frames > 1);
  Layout();
  if (GetParent() != nullptr) GetParent()->Layout();
  SetGlobal(keep);
}

void SlicePicker::SetGlobal(int64_t global) {
  global = series_.Global(series_.Time(global), series_.Slice(global));
  time_->SetValue(static_cast<int>(series_.Time(global)));
  slice_->SetValue(static_cast<int>(series_.Slice(global)));
  ShowText();
  if (strip_->IsShown()) strip_->Refresh();
}

void SlicePicker::SetUncertainty(std::map<int64_t, double> uncertainty) {
  uncertainty_ = std::move(uncertainty);
  GetSizer()->Show(strip_, !uncertainty_.empty());
  Layout();
  if (GetParent() != nullptr) GetParent()->Layout();
  strip_->Refresh();
}

void SlicePicker::PaintStrip() {
  wxPaintDC dc(strip_);
  const wxSize size = strip_->GetClientSize();
  const int64_t g = global(), first = series_.Global(series_.Time(g), 0);
  const std::vector<uint32_t> colours = UncertaintyStrip(uncertainty_, first, series_.depth(), size.x);
  for (int x = 0; x < size.x; ++x) {
    const uint32_t c = colours[static_cast<size_t>(x)];
    dc.SetPen(wxPen(wxColour(c >> 16 & 0xFF, c >> 8 & 0xFF, c & 0xFF)));
    dc.DrawLine(x, 0, x, size.y);
  }
  // The shown slice.
  const int at = static_cast<int>((series_.Slice(g) * 2 + 1) * size.x / std::max<int64_t>(2 * series_.depth(), 1));
  dc.SetPen(*wxBLACK_PEN);
  dc.DrawLine(at, 0, at, size.y);
}

int64_t SlicePicker::global() const { return series_.Global(time_->GetValue(), slice_->GetValue()); }

void SlicePicker::ShowText() {
  const int64_t g = global();
  time_text_->SetLabel(wxString::Format("Time %lld of %lld", static_cast<long long>(series_.Time(g) + 1),
                                        static_cast<long long>(series_.frames)));
  slice_text_->SetLabel(wxString::Format("Slice %lld of %lld", static_cast<long long>(series_.Slice(g) + 1),
                                         static_cast<long long>(series_.depth())));
}

void SlicePicker::Changed() {
  ShowText();
  if (strip_->IsShown()) strip_->Refresh();
  if (on_change) on_change(global());
}

}  // namespace idlegrid::client
