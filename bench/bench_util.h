// Small helpers shared by the benchmark programs.
#ifndef IDLEGRID_BENCH_BENCH_UTIL_H_
#define IDLEGRID_BENCH_BENCH_UTIL_H_

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "idlegrid/shared/status.h"

namespace idlegrid::bench {

// Benchmarks stop at the first failure, saying what failed.
inline void Must(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "benchmark: %s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}
template <typename T>
T Must(StatusOr<T> v, const char* what) {
  Must(v.status(), what);
  return std::move(*v);
}

}  // namespace idlegrid::bench

#endif  // IDLEGRID_BENCH_BENCH_UTIL_H_
