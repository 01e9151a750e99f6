// SliceCanvas: one slice (or plane) on screen with label layers over it; zoom with the wheel
// around the cursor, pan with the right or middle button (or the left one when not
// painting), paint with the left button. Strokes are previewed while dragging and handed to
// the owner as one path when the button is released (one undo step).
#ifndef IDLEGRID_CLIENT_WIZARD_CANVAS_H_
#define IDLEGRID_CLIENT_WIZARD_CANVAS_H_

#include <wx/wx.h>

#include <functional>
#include <vector>

#include "idlegrid/client/annotation.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid::client {

struct LabelLayer {
  const Volume* labels = nullptr;  // owned elsewhere; slice z is drawn
  int64_t z = 0;
  std::vector<uint32_t> colours;   // value k in colours[k - 1]
  double alpha = 0.5;
};

class SliceCanvas : public wxWindow {
 public:
  SliceCanvas(wxWindow* parent, wxSize min_size = wxSize(240, 240));

  // The picture: `gray` is width * height * 3 RGB bytes (a slice through its window).
  void SetPicture(int64_t width, int64_t height, std::vector<uint8_t> gray);
  void SetLayers(std::vector<LabelLayer> layers);
  // Re-renders a box after the labels under it changed (a stroke, undo).
  void RefreshBox(int64_t y0, int64_t y1, int64_t x0, int64_t x1);
  void SetCaption(const wxString& caption);
  void SetCrosshair(int64_t x, int64_t y);  // -1: none
  bool has_picture() const { return width_ > 0; }

  // View: screen pixels per image pixel and the image point at the top-left corner.
  void FitView();
  void SetView(double zoom, double ox, double oy);
  void ZoomBy(double factor);
  double zoom() const { return zoom_; }
  double ox() const { return ox_; }
  double oy() const { return oy_; }
  std::function<void(SliceCanvas*)> on_view;  // the user zoomed or panned

  // Painting: when on, left drags are strokes of `brush_radius` previewed in `brush_rgb`.
  bool painting = false;
  double brush_radius = 3;
  uint32_t brush_rgb = 0xFFFFFF;
  std::function<void(const std::vector<Point>&)> on_stroke;

 private:
  void OnPaint(wxPaintEvent&);
  void OnMouse(wxMouseEvent& e);
  void Render(int64_t y0, int64_t y1, int64_t x0, int64_t x1);
  void Preview(const Point& a, const Point& b);
  Point ToImage(wxPoint p) const { return {ox_ + p.x / zoom_, oy_ + p.y / zoom_}; }

  int64_t width_ = 0, height_ = 0;
  std::vector<uint8_t> gray_, rgb_;
  std::vector<LabelLayer> layers_;
  wxString caption_;
  int64_t cross_x_ = -1, cross_y_ = -1;
  double zoom_ = 1, ox_ = 0, oy_ = 0;
  bool fitted_ = false;
  // Mouse state.
  bool stroking_ = false, panning_ = false;
  wxPoint last_mouse_{-1, -1};
  std::vector<Point> path_;
  int64_t py0_ = 0, py1_ = 0, px0_ = 0, px1_ = 0;  // the preview's box
};

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_WIZARD_CANVAS_H_
