#include "idlegrid/models/review.h"

#include <algorithm>
#include <cmath>

namespace idlegrid::models {

StatusOr<EnsembleSlice> ScoreEnsemble(const std::vector<Volume>& probabilities) {
  if (probabilities.empty()) return InvalidArgumentError("no member's probabilities to score");
  const VolumeShape& s = probabilities[0].shape();
  for (size_t m = 0; m < probabilities.size(); ++m) {
    const Volume& p = probabilities[m];
    if (p.shape() != s || p.dtype() != DType::kUInt8 || s.z != 1 || s.c < 2) {
      return InvalidArgumentError("member " + std::to_string(m) + "'s probabilities are " + p.shape().ToString() +
                                  ": expected one uint8 slice of at least two classes like member 0's " + s.ToString());
    }
  }
  EnsembleSlice out;
  IDLEGRID_ASSIGN_OR_RETURN(out.uncertainty, Volume::CreateUninitialized({1, s.y, s.x, 1}, DType::kUInt8));
  const int64_t voxels = s.y * s.x, k = s.c;
  const auto members = static_cast<int64_t>(probabilities.size());
  const double log_k = std::log(static_cast<double>(k));
  std::vector<double> mean(static_cast<size_t>(k));
  std::vector<int64_t> agree(static_cast<size_t>(members), 0);
  double entropy_sum = 0;
  int64_t uncertain = 0;
  for (int64_t v = 0; v < voxels; ++v) {
    std::fill(mean.begin(), mean.end(), 0.0);
    for (const Volume& p : probabilities) {
      const uint8_t* q = p.data<uint8_t>() + v * k;
      for (int64_t c = 0; c < k; ++c) mean[static_cast<size_t>(c)] += q[c];
    }
    double total = 0;
    for (double x : mean) total += x;
    double h = 0;
    if (total > 0) {
      for (double x : mean) {
        const double f = x / total;
        if (f > 0) h -= f * std::log(f);
      }
      h /= log_k;
    } else {
      h = 1;  // no member gave any class a chance: as unsure as can be
    }
    const auto best = std::max_element(mean.begin(), mean.end()) - mean.begin();
    for (int64_t m = 0; m < members; ++m) {
      const uint8_t* q = probabilities[static_cast<size_t>(m)].data<uint8_t>() + v * k;
      agree[static_cast<size_t>(m)] += std::max_element(q, q + k) - q == best;
    }
    h = std::clamp(h, 0.0, 1.0);
    entropy_sum += h;
    uncertain += h > 0.5;
    out.uncertainty.data<uint8_t>()[v] = static_cast<uint8_t>(std::lround(h * 255));
  }
  const double n = static_cast<double>(std::max<int64_t>(voxels, 1));
  out.entropy = entropy_sum / n;
  out.uncertain_fraction = static_cast<double>(uncertain) / n;
  double agreed = 0;
  for (int64_t a : agree) {
    out.agreement.push_back(static_cast<double>(a) / n);
    agreed += static_cast<double>(a);
  }
  out.disagreement = 1 - agreed / (n * static_cast<double>(members));
  return out;
}

}  // namespace idlegrid::models
