#include "canvas.h"

#include <wx/dcbuffer.h>

#include <algorithm>
#include <cmath>

#include "idlegrid/client/slice_view.h"

namespace idlegrid::client {

SliceCanvas::SliceCanvas(wxWindow* parent, wxSize min_size)
    : wxWindow(parent, wxID_ANY, wxDefaultPosition, min_size, wxFULL_REPAINT_ON_RESIZE | wxWANTS_CHARS) {
  SetBackgroundStyle(wxBG_STYLE_PAINT);
  SetMinSize(min_size);
  Bind(wxEVT_PAINT, &SliceCanvas::OnPaint, this);
  for (const auto& t : {wxEVT_LEFT_DOWN, wxEVT_LEFT_UP, wxEVT_MIDDLE_DOWN, wxEVT_MIDDLE_UP, wxEVT_RIGHT_DOWN,
                        wxEVT_RIGHT_UP, wxEVT_MOTION, wxEVT_MOUSEWHEEL, wxEVT_LEAVE_WINDOW}) {
    Bind(t, &SliceCanvas::OnMouse, this);
  }
  Bind(wxEVT_MOUSE_CAPTURE_LOST, [this](wxMouseCaptureLostEvent&) {
    stroking_ = panning_ = false;
    path_.clear();
    Render(0, height_, 0, width_);
  });
  Bind(wxEVT_SIZE, [this](wxSizeEvent& e) {
    if (!fitted_) FitView();
    e.Skip();
  });
}

void SliceCanvas::SetPicture(int64_t width, int64_t height, std::vector<uint8_t> gray) {
  if (width <= 0 || height <= 0 || gray.size() != static_cast<size_t>(width * height * 3)) return;
  const bool same = width == width_ && height == height_;
  width_ = width;
  height_ = height;
  gray_ = std::move(gray);
  rgb_ = gray_;
  Render(0, height_, 0, width_);
  if (!same || !fitted_) FitView();
  Refresh(false);
}

void SliceCanvas::SetLayers(std::vector<LabelLayer> layers) {
  layers_ = std::move(layers);
  Render(0, height_, 0, width_);
  Refresh(false);
}

void SliceCanvas::Render(int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  y0 = std::max<int64_t>(0, y0), x0 = std::max<int64_t>(0, x0);
  y1 = std::min(height_, y1), x1 = std::min(width_, x1);
  if (y1 <= y0 || x1 <= x0 || gray_.size() < static_cast<size_t>(width_ * height_ * 3)) return;
  for (int64_t y = y0; y < y1; ++y) {
    std::copy(gray_.begin() + (y * width_ + x0) * 3, gray_.begin() + (y * width_ + x1) * 3, rgb_.begin() + (y * width_ + x0) * 3);
  }
  for (const LabelLayer& l : layers_) {
    if (l.labels == nullptr || l.labels->shape().y != height_ || l.labels->shape().x != width_) continue;
    BlendLabels(*l.labels, l.z, l.colours, l.alpha, &rgb_, y0, y1, x0, x1);
  }
}

void SliceCanvas::RefreshBox(int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  Render(y0, y1, x0, x1);
  Refresh(false);
}

void SliceCanvas::SetCaption(const wxString& caption) {
  caption_ = caption;
  Refresh(false);
}

void SliceCanvas::SetCrosshair(int64_t x, int64_t y) {
  cross_x_ = x;
  cross_y_ = y;
  Refresh(false);
}

void SliceCanvas::FitView() {
  const wxSize c = GetClientSize();
  if (width_ <= 0 || c.x <= 0 || c.y <= 0) return;
  zoom_ = std::min(static_cast<double>(c.x) / width_, static_cast<double>(c.y) / height_);
  ox_ = (width_ - c.x / zoom_) / 2;
  oy_ = (height_ - c.y / zoom_) / 2;
  fitted_ = c.x > 20 && c.y > 20;
  Refresh(false);
}

void SliceCanvas::SetView(double zoom, double ox, double oy) {
  zoom_ = std::clamp(zoom, 1.0 / 64, 64.0);
  ox_ = ox;
  oy_ = oy;
  fitted_ = true;
  Refresh(false);
}

void SliceCanvas::ZoomBy(double factor) {
  const wxSize c = GetClientSize();
  const Point centre = ToImage(wxPoint(c.x / 2, c.y / 2));
  const double z = std::clamp(zoom_ * factor, 1.0 / 64, 64.0);
  SetView(z, centre.x - c.x / 2 / z, centre.y - c.y / 2 / z);
}

void SliceCanvas::OnPaint(wxPaintEvent&) {
  wxAutoBufferedPaintDC dc(this);
  dc.SetBackground(wxBrush(wxColour(32, 32, 36)));
  dc.Clear();
  const wxSize c = GetClientSize();
  if (width_ > 0 && c.x > 0 && c.y > 0) {
    // Nearest-neighbour resampling of just what is on screen: the cost follows the window,
    // not the slice, so a 2048² slice pans and zooms as fast as a small one.
    const int sx0 = std::max(0, static_cast<int>(std::floor(-ox_ * zoom_)));
    const int sy0 = std::max(0, static_cast<int>(std::floor(-oy_ * zoom_)));
    const int sx1 = std::min(c.x, static_cast<int>(std::ceil((width_ - ox_) * zoom_)));
    const int sy1 = std::min(c.y, static_cast<int>(std::ceil((height_ - oy_) * zoom_)));
    if (sx1 > sx0 && sy1 > sy0) {
      const int w = sx1 - sx0, h = sy1 - sy0;
      std::vector<int64_t> xs(static_cast<size_t>(w));
      for (int i = 0; i < w; ++i) {
        xs[static_cast<size_t>(i)] = std::clamp<int64_t>(static_cast<int64_t>(ox_ + (sx0 + i + 0.5) / zoom_), 0, width_ - 1);
      }
      wxImage img(w, h, false);
      unsigned char* out = img.GetData();
      for (int j = 0; j < h; ++j) {
        const int64_t y = std::clamp<int64_t>(static_cast<int64_t>(oy_ + (sy0 + j + 0.5) / zoom_), 0, height_ - 1);
        const uint8_t* row = rgb_.data() + y * width_ * 3;
        for (int i = 0; i < w; ++i, out += 3) {
          const uint8_t* p = row + xs[static_cast<size_t>(i)] * 3;
          out[0] = p[0], out[1] = p[1], out[2] = p[2];
        }
      }
      dc.DrawBitmap(wxBitmap(img), sx0, sy0);
    }
    if (cross_x_ >= 0 || cross_y_ >= 0) {
      dc.SetPen(wxPen(wxColour(255, 220, 0), 1, wxPENSTYLE_SHORT_DASH));
      if (cross_x_ >= 0) {
        const int x = static_cast<int>((cross_x_ + 0.5 - ox_) * zoom_);
        dc.DrawLine(x, 0, x, c.y);
      }
      if (cross_y_ >= 0) {
        const int y = static_cast<int>((cross_y_ + 0.5 - oy_) * zoom_);
        dc.DrawLine(0, y, c.x, y);
      }
    }
    if (painting && last_mouse_.x >= 0 && !panning_) {
      dc.SetBrush(*wxTRANSPARENT_BRUSH);
      dc.SetPen(wxPen(*wxWHITE, 1));
      dc.DrawCircle(last_mouse_, std::max(2, static_cast<int>(brush_radius * zoom_)));
    }
  }
  if (!caption_.empty()) {
    dc.SetFont(GetFont().Bold());
    const wxSize t = dc.GetTextExtent(caption_);
    dc.SetBrush(wxBrush(wxColour(0, 0, 0)));
    dc.SetPen(*wxTRANSPARENT_PEN);
    dc.DrawRectangle(0, 0, t.x + 12, t.y + 8);
    dc.SetTextForeground(*wxWHITE);
    dc.DrawText(caption_, 6, 4);
  }
}

void SliceCanvas::Preview(const Point& a, const Point& b) {
  const double r = brush_radius;
  const int64_t y0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(std::min(a.y, b.y) - r)));
  const int64_t y1 = std::min<int64_t>(height_, static_cast<int64_t>(std::ceil(std::max(a.y, b.y) + r)) + 1);
  const int64_t x0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(std::min(a.x, b.x) - r)));
  const int64_t x1 = std::min<int64_t>(width_, static_cast<int64_t>(std::ceil(std::max(a.x, b.x) + r)) + 1);
  const double dx = b.x - a.x, dy = b.y - a.y, len2 = dx * dx + dy * dy;
  const uint8_t c[3] = {static_cast<uint8_t>(brush_rgb >> 16), static_cast<uint8_t>(brush_rgb >> 8), static_cast<uint8_t>(brush_rgb)};
  for (int64_t y = y0; y < y1; ++y) {
    for (int64_t x = x0; x < x1; ++x) {
      double t = len2 > 0 ? ((x - a.x) * dx + (y - a.y) * dy) / len2 : 0;
      t = std::clamp(t, 0.0, 1.0);
      const double ex = x - (a.x + t * dx), ey = y - (a.y + t * dy);
      if (ex * ex + ey * ey > r * r) continue;
      uint8_t* p = rgb_.data() + (y * width_ + x) * 3;
      for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>((gray_[static_cast<size_t>((y * width_ + x) * 3 + k)] + c[k]) / 2);
    }
  }
  py0_ = std::min(py0_, y0), py1_ = std::max(py1_, y1), px0_ = std::min(px0_, x0), px1_ = std::max(px1_, x1);
}

void SliceCanvas::OnMouse(wxMouseEvent& e) {
  const wxPoint p = e.GetPosition();
  if (e.GetWheelRotation() != 0) {
    const Point at = ToImage(p);
    const double z = std::clamp(zoom_ * (e.GetWheelRotation() > 0 ? 1.25 : 0.8), 1.0 / 64, 64.0);
    SetView(z, at.x - p.x / z, at.y - p.y / z);
    if (on_view) on_view(this);
    return;
  }
  if (e.LeftDown() && painting && width_ > 0) {
    stroking_ = true;
    path_ = {ToImage(p)};
    py0_ = px0_ = INT64_MAX;
    py1_ = px1_ = INT64_MIN;
    Preview(path_.back(), path_.back());
    CaptureMouse();
  } else if (e.RightDown() || e.MiddleDown() || (e.LeftDown() && !painting)) {
    panning_ = true;
    CaptureMouse();
  } else if (e.Dragging() && stroking_) {
    const Point q = ToImage(p);
    Preview(path_.back(), q);
    path_.push_back(q);
  } else if (e.Dragging() && panning_ && last_mouse_.x >= 0) {
    ox_ -= (p.x - last_mouse_.x) / zoom_;
    oy_ -= (p.y - last_mouse_.y) / zoom_;
    if (on_view) on_view(this);
  } else if ((e.LeftUp() && stroking_) || ((e.RightUp() || e.MiddleUp() || e.LeftUp()) && panning_)) {
    if (HasCapture()) ReleaseMouse();
    if (stroking_) {
      stroking_ = false;
      const std::vector<Point> path = std::move(path_);
      path_.clear();
      if (on_stroke) on_stroke(path);
      Render(py0_, py1_, px0_, px1_);  // the preview gives way to the labels as they are now
    }
    panning_ = false;
  } else if (e.Leaving()) {
    last_mouse_ = wxPoint(-1, -1);
    Refresh(false);
    return;
  }
  last_mouse_ = p;
  Refresh(false);
}

}  // namespace idlegrid::client
