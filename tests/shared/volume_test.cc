#include "idlegrid/shared/volume.h"

#include <catch2/catch.hpp>

namespace idlegrid {
namespace {

Volume Ramp(VolumeShape shape) {
  Volume v = Volume::Create(shape, DType::kUInt16).value();
  uint16_t* d = v.data<uint16_t>();
  for (int64_t i = 0; i < shape.elements(); ++i) d[i] = static_cast<uint16_t>(i * 7 + 3);
  return v;
}

TEST_CASE("volumes are zeroed, indexed Z-Y-X-C and typed", "[volume]") {
  Volume v = Volume::Create({2, 3, 4, 2}, DType::kFloat32).value();
  CHECK(v.size_bytes() == 2 * 3 * 4 * 2 * 4);
  CHECK(v.slice_bytes() == 3 * 4 * 2 * 4);
  CHECK(v.at<float>(1, 2, 3, 1) == 0.0f);
  v.at<float>(1, 2, 3, 1) = 5.5f;
  CHECK(v.data<float>()[v.Index(1, 2, 3, 1)] == 5.5f);
  CHECK(v.Index(1, 2, 3, 1) == 47);
  CHECK(v.GetAsFloat(47) == 5.5f);
}

TEST_CASE("invalid and oversize shapes are refused", "[volume]") {
  CHECK(Volume::Create({0, 1, 1, 1}, DType::kUInt8).status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(Volume::Create({1, 1, 1, 65}, DType::kUInt8).status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(Volume::Create({1 << 20, 1 << 20, 1 << 20, 64}, DType::kFloat32).status().code() ==
        StatusCode::kResourceExhausted);
  CHECK(Volume::Create({10, 10, 10, 1}, DType::kUInt8, 999).status().code() ==
        StatusCode::kResourceExhausted);
  CHECK(ParseDType("uint16").value() == DType::kUInt16);
  CHECK_FALSE(ParseDType("int16").ok());
}

TEST_CASE("slab plans cover the volume once with clipped halos", "[volume]") {
  auto slabs = PlanSlabs(50, 16, 4).value();
  REQUIRE(slabs.size() == 4);
  CHECK(slabs[0] == SlabRange{0, 16, 0, 4});
  CHECK(slabs[1] == SlabRange{16, 32, 4, 4});
  CHECK(slabs[3] == SlabRange{48, 50, 4, 0});
  int64_t covered = 0;
  for (size_t i = 0; i < slabs.size(); ++i) {
    covered += slabs[i].depth();
    if (i > 0) CHECK(slabs[i].z_begin == slabs[i - 1].z_end);
    CHECK(slabs[i].read_begin() >= 0);
    CHECK(slabs[i].read_end() <= 50);
  }
  CHECK(covered == 50);
  // Halo larger than neighbours: clipped to the volume.
  CHECK(PlanSlabs(5, 2, 10).value()[1] == SlabRange{2, 4, 2, 1});
  CHECK_FALSE(PlanSlabs(0, 4, 1).ok());
  CHECK_FALSE(PlanSlabs(10, 0, 1).ok());
  CHECK_FALSE(PlanSlabs(10, 4, -1).ok());
}

TEST_CASE("extract and stitch round-trip exactly", "[volume]") {
  for (int64_t depth : {1, 7, 33}) {
    for (int64_t slab_depth : {1, 4, 40}) {
      for (int64_t halo : {0, 2, 9}) {
        Volume v = Ramp({depth, 5, 6, 2});
        Volume out = Volume::Create(v.shape(), v.dtype()).value();
        for (const SlabRange& s : PlanSlabs(depth, slab_depth, halo).value()) {
          Volume slab = ExtractSlab(v, s).value();
          CHECK(slab.shape().z == s.read_end() - s.read_begin());
          // The halo really is the neighbouring data.
          CHECK(slab.at<uint16_t>(0, 0, 0) == v.at<uint16_t>(s.read_begin(), 0, 0));
          REQUIRE(StitchSlab(slab, s, &out).ok());
        }
        INFO(depth << " " << slab_depth << " " << halo);
        CHECK(out == v);
      }
    }
  }
}

TEST_CASE("stitching refuses mismatched slabs", "[volume]") {
  Volume v = Ramp({10, 4, 4, 1});
  Volume out = Volume::Create(v.shape(), v.dtype()).value();
  SlabRange s{2, 6, 2, 2};
  Volume slab = ExtractSlab(v, s).value();
  CHECK(StitchSlab(slab, SlabRange{2, 6, 1, 2}, &out).code() == StatusCode::kInvalidArgument);
  Volume other = Volume::Create({8, 4, 4, 1}, DType::kUInt8).value();
  CHECK(StitchSlab(other, s, &out).code() == StatusCode::kInvalidArgument);
  CHECK(StitchSlab(slab, SlabRange{8, 12, 2, 2}, &out).code() == StatusCode::kOutOfRange);
  CHECK(ExtractSlab(v, SlabRange{8, 10, 0, 1}).status().code() == StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace idlegrid
