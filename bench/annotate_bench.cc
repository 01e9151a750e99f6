// annotate_bench: the wizard's painting speed on a 2048 x 2048 slice (goal: a stroke update
// under 16 ms, one frame at 60 Hz). A stroke is a 200-point path with an 8-pixel brush,
// recorded for undo; the baseline, measured in the same run, is copying the whole slice
// (what a naive "snapshot the slice for undo" would cost per stroke).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "idlegrid/client/annotation.h"

int main() {
  using namespace idlegrid;
  using Clock = std::chrono::steady_clock;
  client::Annotation a({2, 2048, 2048, 1});
  const uint8_t c = a.AddClass("phase").value();
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> pos(0, 2047);
  std::vector<double> ms;
  for (int s = 0; s < 200; ++s) {
    std::vector<client::Point> path;
    double x = pos(rng), y = pos(rng);
    for (int i = 0; i < 200; ++i) {  // a wandering stroke, ~3 px per mouse event
      x = std::clamp(x + 3 * std::cos(i * 0.05 + s), 0.0, 2047.0);
      y = std::clamp(y + 3 * std::sin(i * 0.07 + s), 0.0, 2047.0);
      path.push_back({x, y});
    }
    const auto t0 = Clock::now();
    if (!a.Stroke(1, path, 8, s % 5 == 4 ? 0 : c).ok()) return 1;
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::vector<uint8_t> copy(2048 * 2048);
  double copy_ms = 1e9;
  for (int i = 0; i < 20; ++i) {
    const auto t0 = Clock::now();
    std::memcpy(copy.data(), a.labels().slice_bytes_at(1), copy.size());
    copy_ms = std::min(copy_ms, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const double p50 = ms[ms.size() / 2], p99 = ms[ms.size() * 99 / 100], worst = ms.back();
  std::printf("strokes of 200 points, brush 8 px, 2048x2048 slice: p50 %.2f ms, p99 %.2f ms, worst %.2f ms\n", p50,
              p99, worst);
  std::printf("baseline: copying the whole slice %.2f ms\n", copy_ms);
  std::printf("RESULT stroke_p50_ms=%.2f stroke_p99_ms=%.2f stroke_worst_ms=%.2f slice_copy_ms=%.2f p99_vs_slice_copy=%.2f\n",
              p50, p99, worst, copy_ms, p99 / copy_ms);
  return 0;
}
