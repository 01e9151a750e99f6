// Volume I/O benchmark: how close TIFF stack reading, slab reading and SHA-256 hashing come
// to the speed of simply reading the same bytes from the page cache (the baseline, measured
// in the same run on the same file).
//   io_bench [--z N] [--y N] [--x N] [--dir DIR]
// Last line: RESULT key=value ...
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "idlegrid/shared/crypto.h"
#include "idlegrid/shared/tiff_io.h"

namespace {

double Time(const std::function<void()>& f, int repeats = 3) {
  double best = 1e300;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

void Die(const idlegrid::Status& st) {
  std::fprintf(stderr, "io_bench: %s\n", st.ToString().c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t z = 128, y = 512, x = 512;
  std::string dir = "/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--z") z = std::atoll(argv[i + 1]);
    else if (flag == "--y") y = std::atoll(argv[i + 1]);
    else if (flag == "--x") x = std::atoll(argv[i + 1]);
    else if (flag == "--dir") dir = argv[i + 1];
  }
  idlegrid::Volume v = idlegrid::Volume::Create({z, y, x, 1}, idlegrid::DType::kUInt16).value();
  for (int64_t i = 0; i < v.shape().elements(); ++i) v.data<uint16_t>()[i] = static_cast<uint16_t>(i * 2654435761u >> 16);
  const std::string path = dir + "/idlegrid_io_bench.tif";
  const double mib = static_cast<double>(v.size_bytes()) / (1 << 20);

  double write_s = Time([&] {
    idlegrid::Status st = idlegrid::WriteTiff(path, v);
    if (!st.ok()) Die(st);
  });
  // Baseline: plain read() of the whole file (warm page cache).
  std::vector<char> buf(static_cast<size_t>(v.size_bytes()) + (1 << 20));
  double raw_s = Time([&] {
    int fd = ::open(path.c_str(), O_RDONLY);
    size_t total = 0;
    ssize_t n;
    while ((n = ::read(fd, buf.data() + total, buf.size() - total)) > 0) total += static_cast<size_t>(n);
    ::close(fd);
  });
  double read_s = Time([&] {
    idlegrid::StatusOr<idlegrid::Volume> r = idlegrid::ReadTiff(path);
    if (!r.ok()) Die(r.status());
  });
  idlegrid::TiffReadOptions slab;
  slab.z_begin = z / 2;
  slab.z_end = z / 2 + std::max<int64_t>(1, z / 8);
  double slab_s = Time([&] {
    idlegrid::StatusOr<idlegrid::Volume> r = idlegrid::ReadTiff(path, slab);
    if (!r.ok()) Die(r.status());
  });
  double slab_fraction = static_cast<double>(slab.z_end - slab.z_begin) / static_cast<double>(z);
  double sha_s = Time([&] {
    idlegrid::StatusOr<std::string> h = idlegrid::Sha256File(path);
    if (!h.ok()) Die(h.status());
  });
  std::remove(path.c_str());

  std::printf("volume %lldx%lldx%lld uint16, %.0f MiB\n", static_cast<long long>(z),
              static_cast<long long>(y), static_cast<long long>(x), mib);
  std::printf("raw read (baseline)  %8.3f s  %8.0f MiB/s\n", raw_s, mib / raw_s);
  std::printf("tiff write           %8.3f s  %8.0f MiB/s\n", write_s, mib / write_s);
  std::printf("tiff read            %8.3f s  %8.0f MiB/s\n", read_s, mib / read_s);
  std::printf("tiff slab read (%.0f%%) %8.3f s\n", 100 * slab_fraction, slab_s);
  std::printf("sha256 file          %8.3f s  %8.0f MiB/s\n", sha_s, mib / sha_s);
  // Ratios against the baseline; slab_cost is the slab's time relative to its share of a
  // whole read (1.0 = reading a slab costs exactly its fraction of the file).
  std::printf("RESULT tiff_read_vs_raw=%.2f tiff_write_vs_raw=%.2f slab_cost=%.2f "
              "sha256_vs_raw=%.2f read_mib_s=%.0f\n",
              read_s / raw_s, write_s / raw_s, slab_s / (read_s * slab_fraction), sha_s / raw_s,
              mib / read_s);
  return 0;
}
