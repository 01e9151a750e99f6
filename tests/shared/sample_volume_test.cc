#include "idlegrid/shared/sample_volume.h"

#include <catch2/catch.hpp>

namespace idlegrid {
namespace {

TEST_CASE("the sample has three phases, scribbles on one slice and is reproducible",
          "[sample]") {
  SampleOptions o;
  o.shape = {16, 96, 96, 1};
  o.labelled_pixels = 6000;
  MaterialsSample a = GenerateMaterialsSample(o).value();
  MaterialsSample b = GenerateMaterialsSample(o).value();
  CHECK(a.image == b.image);
  CHECK(a.scribbles == b.scribbles);
  o.seed = 2;
  CHECK_FALSE(GenerateMaterialsSample(o).value().image == a.image);

  int64_t phase_count[4] = {0, 0, 0, 0};
  double phase_mean[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < a.truth.shape().elements(); ++i) {
    uint8_t p = a.truth.data<uint8_t>()[i];
    REQUIRE(p >= 1);
    REQUIRE(p <= 3);
    ++phase_count[p];
    phase_mean[p] += a.image.data<uint16_t>()[i];
  }
  for (int p = 1; p <= 3; ++p) {
    REQUIRE(phase_count[p] > 0);
    phase_mean[p] /= static_cast<double>(phase_count[p]);
  }
  CHECK(phase_count[1] > phase_count[2]);  // the matrix dominates
  CHECK(phase_mean[2] < phase_mean[1]);    // pores are dark
  CHECK(phase_mean[3] > phase_mean[1]);    // inclusions are bright

  // Scribbles: only on the label slice, always agreeing with the truth, all phases painted.
  int64_t painted[4] = {0, 0, 0, 0};
  const auto& s = a.scribbles.shape();
  for (int64_t z = 0; z < s.z; ++z) {
    for (int64_t y = 0; y < s.y; ++y) {
      for (int64_t x = 0; x < s.x; ++x) {
        uint8_t label = a.scribbles.at<uint8_t>(z, y, x);
        if (label == 0) continue;
        REQUIRE(z == a.label_slice);
        REQUIRE(label == a.truth.at<uint8_t>(z, y, x));
        ++painted[label];
      }
    }
  }
  for (int p = 1; p <= 3; ++p) CHECK(painted[p] > 100);
  CHECK(painted[1] + painted[2] + painted[3] <= 6000);
  CHECK(painted[1] + painted[2] + painted[3] > 2000);
}

TEST_CASE("invalid sample options are refused", "[sample]") {
  SampleOptions o;
  o.grains = 0;
  CHECK_FALSE(GenerateMaterialsSample(o).ok());
  o = SampleOptions();
  o.shape = {0, 10, 10, 1};
  CHECK_FALSE(GenerateMaterialsSample(o).ok());
}

}  // namespace
}  // namespace idlegrid
