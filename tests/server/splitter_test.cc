// Splitting rules: unit sizes from the cost estimate, chains that cover every epoch once,
// slabs that cover every slice once with the model's halo.
#include <catch2/catch.hpp>

#include "server/server_fixtures.h"
#include "splitter.h"

namespace idlegrid::server {
namespace {

TEST_CASE("training units last about the target time and cover the chain", "[server][splitter]") {
  models::ModelConfig c = testing::TinyConfig("m", 37);
  c.steps_per_epoch = 500;  // epochs of tens of seconds
  c.patch_y = c.patch_x = 128;
  c.batch_size = 8;
  QueueOptions o;
  const double epoch_s = EstimateEpochSeconds(c, o.unit_threads);
  REQUIRE(epoch_s > 0);
  o.unit_target_seconds = static_cast<int64_t>(epoch_s * 5);
  const int64_t k = EpochsPerUnit(c, o);
  CHECK(k >= 4);
  CHECK(k <= 6);
  // More threads: faster epochs, more of them per unit.
  QueueOptions more = o;
  more.unit_threads = 8;
  CHECK(EpochsPerUnit(c, more) > k);
  // Bounds: at least one epoch, at most the chain.
  o.unit_target_seconds = 0;
  CHECK(EpochsPerUnit(c, o) == 1);
  o.unit_target_seconds = 1'000'000'000;
  CHECK(EpochsPerUnit(c, o) == 37);

  o.unit_target_seconds = static_cast<int64_t>(epoch_s * 10);
  const std::vector<WorkUnit> units = SplitTrainChain("j1", "c0", c, {}, {8, 64, 64, 1}, 7, o);
  REQUIRE(units.size() >= 3);
  int64_t next = 0;
  for (const WorkUnit& u : units) {
    CHECK(u.epochs->begin == next);
    next = u.epochs->end;
    CHECK(u.seed == 7);
    CHECK(u.config["model"]["name"] == "m");
    CHECK(u.threads == o.unit_threads);
  }
  CHECK(next == 37);
}

TEST_CASE("the epoch estimate follows the measured step costs", "[server][splitter]") {
  // The strategy's CPU U-Net, 16 patches of 64 px and 8 filters, measured 54 ms a step on 2
  // threads: 50 steps and a validation pass make about 3.2 s.
  models::ModelConfig unet = testing::TinyConfig("m", 10);
  unet.architecture = "unet2d";
  unet.base_filters = 8;
  unet.batch_size = 16;
  unet.patch_z = 1;
  unet.patch_y = unet.patch_x = 64;
  unet.steps_per_epoch = 50;
  const double s = EstimateEpochSeconds(unet, 2);
  CHECK(s == Approx(1.2 * 50 * 0.054).epsilon(0.05));
  models::ModelConfig wide = unet, dilated = unet, unet3d = unet;
  wide.base_filters = 16;  // 90 ms a step
  CHECK(EstimateEpochSeconds(wide, 2) / s == Approx(90.0 / 54.0).epsilon(0.05));
  dilated.architecture = "dilated2d";
  dilated.base_filters = 12;  // the strategy's width: about 120 ms a step
  CHECK(EstimateEpochSeconds(dilated, 2) / s == Approx(120.0 / 54.0).epsilon(0.05));
  unet3d.architecture = "unet3d";  // per voxel
  CHECK(EstimateEpochSeconds(unet3d, 2) / s == Approx(2.2).epsilon(0.05));
  CHECK(EstimateEpochSeconds(unet, 1) / s == Approx(1.7).epsilon(0.01));
}

TEST_CASE("memory needs grow with the volume and the network", "[server][splitter]") {
  models::ModelConfig c = testing::TinyConfig("m", 1);
  const int64_t small = UnitMemoryBytes(c, {8, 64, 64, 1});
  CHECK(UnitMemoryBytes(c, {512, 512, 512, 1}) > small + (int64_t{1} << 30));
  c.base_filters *= 4;
  c.architecture = "unet3d";
  c.patch_z = 16;
  CHECK(UnitMemoryBytes(c, {8, 64, 64, 1}) > small);
}

TEST_CASE("inference slabs cover the volume once, with the model's halo", "[server][splitter]") {
  models::ModelConfig c = testing::TinyConfig("m", 1);
  c.architecture = "unet25d";
  c.context_slices = 2;
  QueueOptions o;
  o.slab_target_voxels = 10 * 100 * 100;
  const VolumeShape shape{57, 100, 100, 1};
  const BlobRef model{std::string(64, 'a'), 1, ""}, volume{std::string(64, 'b'), 2, ""};
  std::vector<WorkUnit> units = testing::Must(SplitInfer("j2", "s1", c, model, volume, shape, "labels", o));
  REQUIRE(units.size() > 5);
  int64_t next = 0;
  for (const WorkUnit& u : units) {
    const SlabRange& s = *u.slab;
    CHECK(s.z_begin == next);
    next = s.z_end;
    CHECK(s.read_end() - s.read_begin() <= 10);
    CHECK(s.halo_before == std::min<int64_t>(c.InferenceHalo(), s.z_begin));
    CHECK(u.inputs.at("model") == model);
    CHECK(u.config["output"] == "labels");
  }
  CHECK(next == 57);
  // A small volume still becomes several slabs, so that nodes share it...
  o.slab_target_voxels = int64_t{1} << 30;
  units = testing::Must(SplitInfer("j3", "s1", c, model, volume, {48, 160, 160, 1}, "labels", o));
  CHECK(units.size() == 4);
  // ...but never slabs whose halos outweigh their cores.
  c.architecture = "unet3d";
  c.patch_z = 16;
  const int64_t halo = c.InferenceHalo();
  REQUIRE(halo > 3);
  units = testing::Must(SplitInfer("j4", "s1", c, model, volume, {48, 160, 160, 1}, "labels", o));
  for (const WorkUnit& u : units) CHECK((u.slab->depth() >= 2 * halo || u.slab->z_end == 48));
  // A part of the volume: only its slices, with halos from the slices around it.
  units = testing::Must(SplitInfer("j5", "s1", c, model, volume, {48, 160, 160, 1}, "labels", o, 20, 21));
  REQUIRE(units.size() == 1);
  CHECK(units[0].slab->z_begin == 20);
  CHECK(units[0].slab->z_end == 21);
  CHECK(units[0].slab->halo_before == halo);
  CHECK(units[0].slab->halo_after == halo);
  CHECK_FALSE(SplitInfer("j6", "s1", c, model, volume, {48, 160, 160, 1}, "labels", o, 40, 60).ok());
}

TEST_CASE("a review samples every time point evenly and holds each slice with its models' halo", "[server][splitter]") {
  // A small volume is reviewed whole; a deep one at evenly spread slices, increasing.
  CHECK(ReviewSample(12, 1, 64) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  CHECK(ReviewSample(100, 1, 4) == std::vector<int64_t>{12, 37, 62, 87});
  // Three time points of 10 slices, 6 slices: two in each, at the same places.
  CHECK(ReviewSample(30, 3, 6) == std::vector<int64_t>{2, 7, 12, 17, 22, 27});
  CHECK(ReviewSample(30, 3, 1) == std::vector<int64_t>{5, 15, 25});  // at least one each

  models::ModelConfig flat = testing::TinyConfig("a", 2), deep = testing::TinyConfig("b", 2);
  deep.architecture = "unet25d";
  deep.context_slices = 2;
  const BlobRef volume{std::string(64, 'a'), 1000, ""}, m0{std::string(64, 'b'), 10, ""}, m1{std::string(64, 'c'), 10, ""};
  QueueOptions o;
  // 3 time points of 20 slices of 512 x 512 with two models: 64 Mi / (256 Ki x 2) = 128
  // voxel-slices: 64 slices at most, so all 20 of each time point, 8 per unit.
  const VolumeShape shape{60, 512, 512, 1};
  const std::vector<WorkUnit> units = SplitReview("j", "s1", {{"model-c0", m0, flat}, {"model-c1", m1, deep}}, volume, shape, 3, o);
  std::vector<int64_t> all;
  for (const WorkUnit& u : units) {
    CHECK(u.kind == UnitKind::kReviewSlices);
    CHECK(u.review_slices.size() <= 8);
    CHECK(u.inputs.count("model-c0") == 1);
    CHECK(u.inputs.count("model-c1") == 1);
    CHECK(u.config["models"] == Json::array({"model-c0", "model-c1"}));
    REQUIRE(u.region.has_value());
    CHECK(u.region->frames == 3);
    for (int64_t z : u.review_slices) {
      all.push_back(z);
      // The 2.5D model's two slices of context on each side, inside the time point.
      for (int64_t d = -2; d <= 2; ++d) {
        const int64_t n = z + d;
        if (n / 20 == z / 20 && n >= 0) CHECK(u.region->Local(n) >= 0);
      }
    }
    // It travels as JSON and back unchanged.
    CHECK(WorkUnit::FromJson(u.ToJson()).value() == u);
  }
  CHECK(all == ReviewSample(60, 3, 64));
  CHECK(all.size() == 60);
}

}  // namespace
}  // namespace idlegrid::server
