// annotate_bench: the wizard's painting speed on a 2048 x 2048 slice (goal: a stroke update
// under 16 ms, one frame at 60 Hz). A stroke is a 200-point path with an 8-pixel brush,
// recorded for undo; the baseline, measured in the same run, is copying the whole slice
// (what a naive "snapshot the slice for undo" would cost per stroke).
// Then opening a 512³ uint16 stack in the wizard (goal: under 2 s to the first slice on
// screen: Wizard::Open, which also saves the empty session, then reading and rendering the
// middle slice) against reading the whole stack, in the same run (files in the page cache).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "idlegrid/client/annotation.h"
#include "idlegrid/client/session.h"
#include "idlegrid/client/slice_view.h"
#include "idlegrid/client/wizard.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/tiff_io.h"

// This process's resident memory (VmRSS), MiB.
static double RssMib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024;
  }
  return 0;
}

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

  // Opening a 512³ uint16 stack.
  const char* tmp = std::getenv("TMPDIR");
  const std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/idlegrid-annotate-bench";
  std::filesystem::remove_all(dir);
  if (!MakeDirs(dir, 0700).ok()) return 1;
  {
    Volume v = Volume::Create({512, 512, 512, 1}, DType::kUInt16).value();
    uint16_t* d = v.data<uint16_t>();
    for (int64_t i = 0; i < v.shape().elements(); ++i) d[i] = static_cast<uint16_t>((i * 2654435761u) >> 20);
    if (!WriteTiff(dir + "/big.tif", v).ok()) return 1;
  }
  double whole_s = 1e9, open_s = 1e9, render_ms = 1e9;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = Clock::now();
    if (!ReadTiff(dir + "/big.tif").ok()) return 1;
    whole_s = std::min(whole_s, std::chrono::duration<double>(Clock::now() - t0).count());
    client::WizardOptions o;
    o.session_dir = dir + "/session" + std::to_string(rep);
    o.local_nodes = 0;  // a private server only: nothing computes here
    std::unique_ptr<client::Wizard> w = bench::Must(client::Wizard::Create(o), "wizard");
    t0 = Clock::now();
    bench::Must(w->Open(dir + "/big.tif"), "open");
    std::shared_ptr<const Volume> slice = bench::Must(w->stack().Slice(256), "slice");
    const auto t1 = Clock::now();
    std::vector<uint8_t> rgb = client::RenderGray(*slice, 0, client::AutoWindow(*slice));
    client::BlendLabels(w->annotation().labels(), 256, {0xE69F00}, 0.5, &rgb);
    const auto t2 = Clock::now();
    open_s = std::min(open_s, std::chrono::duration<double>(t2 - t0).count());
    render_ms = std::min(render_ms, std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  std::printf("open a 512^3 uint16 stack to its first slice on screen: %.2f s (render %.1f ms); reading it whole: %.2f s\n",
              open_s, render_ms, whole_s);
  // The labels of a 1024^3 volume (1 GiB of uint8) with one painted slice: what they hold.
  const double rss0 = RssMib();
  client::Annotation labels(VolumeShape{1024, 1024, 1024, 1});
  if (!labels.AddClass("a").ok() || !labels.Stroke(512, {{10, 10}, {1000, 1000}}, 8, 1).ok()) return 1;
  const double labels_mib = RssMib() - rss0;
  std::printf("labels of a 1024^3 volume, one stroke painted: %.1f MiB resident of 1024 MiB\n", labels_mib);
  // The same labels saved with the session and read back (a session reopened tomorrow).
  client::Session session;
  session.image_path = dir + "/none.tif";
  if (!client::SaveSession(dir + "/sparse", session, labels).ok()) return 1;
  const double rss1 = RssMib();
  StatusOr<client::LoadedSession> reopened = client::LoadSession(dir + "/sparse");
  if (!reopened.ok() || reopened->annotation.labelled() != labels.labelled()) return 1;
  const double reopened_mib = RssMib() - rss1;
  std::filesystem::remove_all(dir);
  std::printf("the same labels reopened from the session: %.1f MiB resident\n", reopened_mib);
  std::printf("RESULT stroke_p50_ms=%.2f stroke_p99_ms=%.2f stroke_worst_ms=%.2f slice_copy_ms=%.2f p99_vs_slice_copy=%.2f "
              "open_512_s=%.2f read_whole_s=%.2f open_vs_read_whole=%.3f labels_1g_resident_mib=%.1f labels_resident_ratio=%.4f "
              "labels_1g_reopened_resident_mib=%.1f\n",
              p50, p99, worst, copy_ms, p99 / copy_ms, open_s, whole_s, open_s / whole_s, labels_mib, labels_mib / 1024,
              reopened_mib);
  return 0;
}
