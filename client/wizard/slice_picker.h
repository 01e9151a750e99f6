// SlicePicker: the wizard's slice slider, with a time slider above it for a time series
// (SeriesIndex: the stack's slices are its time points one after the other), and under it,
// after a round's review, the uncertainty strip of the shown time point (UncertaintyStrip;
// a click goes to that slice). Reports the stack's slice (its global index) as the user
// moves either. GUI thread only.
#ifndef IDLEGRID_CLIENT_WIZARD_SLICE_PICKER_H_
#define IDLEGRID_CLIENT_WIZARD_SLICE_PICKER_H_

#include <wx/wx.h>

#include <cstdint>
#include <functional>
#include <map>

#include "idlegrid/client/slice_view.h"

namespace idlegrid::client {

class SlicePicker : public wxPanel {
 public:
  // on_release_only: report when a slider is let go, not at every step it passes (views that
  // ask the grid for each slice).
  SlicePicker(wxWindow* parent, bool on_release_only = false);

  // The stack's slices and time points; keeps the position when it still fits.
  void SetSeries(SeriesIndex series);
  void SetGlobal(int64_t global);  // does not call on_change
  int64_t global() const;
  const SeriesIndex& series() const { return series_; }
  // Reviewed slice -> uncertainty 0..1 (empty: no strip).
  void SetUncertainty(std::map<int64_t, double> uncertainty);

  std::function<void(int64_t global)> on_change;

 private:
  void Changed();
  void ShowText();

  void PaintStrip();

  SeriesIndex series_;
  std::map<int64_t, double> uncertainty_;
  wxWindow* strip_;
  wxSlider *time_, *slice_;
  wxStaticText *time_text_, *slice_text_;
  wxBoxSizer* time_row_;
};

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_WIZARD_SLICE_PICKER_H_
