// Where to correct: the ensemble's uncertainty from its members' class probabilities.
#include "idlegrid/models/review.h"

#include <array>
#include <cmath>
#include <vector>

#include <catch2/catch.hpp>

namespace idlegrid::models {
namespace {

// One 1 x 2 x 2 slice of three classes; voxel v gets probabilities p[v] (summing to 255).
Volume Probs(const std::vector<std::array<uint8_t, 3>>& p) {
  Volume v = Volume::Create({1, 2, 2, 3}, DType::kUInt8).value();
  for (size_t i = 0; i < p.size(); ++i) {
    for (size_t c = 0; c < 3; ++c) v.data<uint8_t>()[i * 3 + c] = p[i][c];
  }
  return v;
}

TEST_CASE("an ensemble is unsure where its members disagree or are unsure themselves", "[models][review]") {
  // Voxel 0: all sure of class 0. Voxel 1: sure, but of different classes. Voxel 2: both
  // unsure (uniform). Voxel 3: both sure of class 2.
  const Volume a = Probs({{255, 0, 0}, {255, 0, 0}, {85, 85, 85}, {0, 0, 255}});
  const Volume b = Probs({{255, 0, 0}, {0, 255, 0}, {85, 85, 85}, {0, 0, 255}});
  const EnsembleSlice s = ScoreEnsemble({a, b}).value();
  const uint8_t* u = s.uncertainty.data<uint8_t>();
  CHECK(u[0] == 0);
  CHECK(u[3] == 0);
  CHECK(u[2] == 255);  // uniform: the most uncertain
  // Two classes at one half each: entropy log 2 / log 3 of the maximum.
  CHECK(u[1] == static_cast<uint8_t>(std::lround(255 * std::log(2.0) / std::log(3.0))));
  CHECK(s.entropy == Approx((0 + std::log(2.0) / std::log(3.0) + 1 + 0) / 4).epsilon(0.01));
  CHECK(s.uncertain_fraction == Approx(0.5));  // voxels 1 (0.63) and 2 (1.0)
  // Voxel 1: the ensemble ties and picks class 0 (the first): b disagrees there.
  CHECK(s.disagreement == Approx(1.0 / 8));
  REQUIRE(s.agreement.size() == 2);
  CHECK(s.agreement[0] == Approx(1.0));
  CHECK(s.agreement[1] == Approx(0.75));
  // One member alone: its own confidence, no disagreement.
  const EnsembleSlice one = ScoreEnsemble({b}).value();
  CHECK(one.disagreement == 0);
  CHECK(one.uncertainty.data<uint8_t>()[1] == 0);
  CHECK(one.uncertainty.data<uint8_t>()[2] == 255);
  // Members of other shapes, or nothing to score: named errors.
  CHECK(ScoreEnsemble({}).status().code() == StatusCode::kInvalidArgument);
  const Volume other = Volume::Create({1, 2, 2, 2}, DType::kUInt8).value();
  CHECK_THAT(ScoreEnsemble({a, other}).status().message(), Catch::Contains("member 1"));
}

}  // namespace
}  // namespace idlegrid::models
