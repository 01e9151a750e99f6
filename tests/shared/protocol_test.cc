#include "idlegrid/shared/protocol.h"

#include <catch2/catch.hpp>

#include "protocol_fixtures.h"

namespace idlegrid {
namespace {

using testing::MakeBlob;
using testing::MakeSlabUnit;
using testing::MakeTrainUnit;

// Serialises, re-parses from text, and checks equality.
template <typename M>
void CheckRoundTrip(const M& m) {
  StatusOr<std::string> text = CanonicalJson(m.ToJson());
  REQUIRE(text.ok());
  StatusOr<M> back = ParseMessage<M>(*text);
  INFO(*text);
  REQUIRE(back.ok());
  CHECK(*back == m);
}

// Applies `edit` to the JSON of a valid unit and returns the parse error message.
template <typename M, typename Edit>
std::string ErrorAfter(const M& m, Edit edit) {
  Json j = m.ToJson();
  edit(j);
  StatusOr<M> r = M::FromJson(j);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
  return r.status().message();
}

TEST_CASE("every message round-trips through canonical JSON", "[protocol]") {
  CheckRoundTrip(MakeTrainUnit());
  CheckRoundTrip(MakeSlabUnit());

  BlobRef b = MakeBlob('e', 77);
  b.url = "/api/v1/blobs/" + b.sha256;
  Json bj = b.ToJson();
  StatusOr<BlobRef> bb = BlobRef::FromJson(bj);
  REQUIRE(bb.ok());
  CHECK(*bb == b);

  NodeInfo n;
  n.hostname = "lab-pc-3";
  n.os = "Linux 6.1 x86_64";
  n.version = "0.1.0";
  n.cores = 16;
  n.ram_bytes = int64_t{64} << 30;
  n.gpus.push_back({"NVIDIA RTX A4000", int64_t{16} << 30});
  CheckRoundTrip(n);

  Job job;
  job.job_id = "job-1";
  job.kind = JobKind::kSweep;
  job.name = "fib-sem pores";
  job.submitted_at = 1790000000;
  job.inputs["image"] = MakeBlob('1', 10);
  job.config = Json{{"candidates", 4}};
  CheckRoundTrip(job);

  Lease lease{"l-1", "u-1", "n-1", 100, 400};
  CheckRoundTrip(lease);

  Heartbeat hb;
  hb.lease_id = "l-1";
  hb.node_id = "n-1";
  hb.progress = 0.25;
  hb.epoch = 3;
  hb.message = "epoch 3/12";
  hb.metrics = {{"loss", 0.125}, {"dice_1", 0.75}};
  CheckRoundTrip(hb);
  hb.checkpoint = MakeBlob('f', 1234);
  CheckRoundTrip(hb);

  HeartbeatReply reply{HeartbeatAction::kAbort, 500, "job cancelled"};
  CheckRoundTrip(reply);

  Result res;
  res.lease_id = "l-1";
  res.unit_id = "u-1";
  res.node_id = "n-1";
  res.outputs["checkpoint"] = MakeBlob('9', 4096);
  res.metrics = {{"val_dice", 0.875}};
  res.epochs_done = 4;
  res.elapsed_s = 93.5;
  CheckRoundTrip(res);

  AbortRequest abort{"node stopping", false, std::nullopt};
  CheckRoundTrip(abort);
  abort.failed = true;
  abort.checkpoint = MakeBlob('a', 2048);
  CheckRoundTrip(abort);
}

TEST_CASE("abort requests are strict: a short reason, a boolean, a valid checkpoint", "[protocol]") {
  const AbortRequest a{"stopped", false, MakeBlob('c', 10)};
  CHECK(ErrorAfter(a, [](Json& j) { j["reason"] = std::string(5000, 'x'); })
            .find("abort.reason") != std::string::npos);
  CHECK(ErrorAfter(a, [](Json& j) { j["failed"] = "yes"; }).find("abort.failed") != std::string::npos);
  CHECK(ErrorAfter(a, [](Json& j) { j["checkpoint"]["sha256"] = "nothex"; })
            .find("abort.checkpoint") != std::string::npos);
  CHECK(ErrorAfter(a, [](Json& j) { j["lease"] = "l-1"; }).find("lease") != std::string::npos);
  // "failed" and "checkpoint" may be left out: a plain stop.
  Json minimal{{"schema", kSchemaVersion}, {"reason", "stopped"}};
  StatusOr<AbortRequest> m = AbortRequest::FromJson(minimal);
  REQUIRE(m.ok());
  CHECK_FALSE(m->failed);
  CHECK_FALSE(m->checkpoint.has_value());
}

TEST_CASE("WorkUnit rejects unknown, missing and mistyped fields", "[protocol]") {
  WorkUnit u = MakeTrainUnit();
  CHECK(ErrorAfter(u, [](Json& j) { j["surprise"] = 1; }) == "unit.surprise: unknown field");
  CHECK(ErrorAfter(u, [](Json& j) { j.erase("threads"); }) == "unit.threads: missing field");
  CHECK(ErrorAfter(u, [](Json& j) { j["threads"] = "2"; }) ==
        "unit.threads: expected integer, got string");
  CHECK(ErrorAfter(u, [](Json& j) { j["threads"] = 0; }) == "unit.threads: out of range [1, 1024]");
  CHECK(ErrorAfter(u, [](Json& j) { j["needs_gpu"] = 1; }) ==
        "unit.needs_gpu: expected boolean, got integer");
  CHECK(ErrorAfter(u, [](Json& j) { j["unit_id"] = std::string(65, 'a'); })
            .find("exceeds the limit of 64") != std::string::npos);
  CHECK(ErrorAfter(u, [](Json& j) { j["unit_id"] = "../etc"; })
            .find("unit.unit_id: must be") != std::string::npos);
  CHECK(ErrorAfter(u, [](Json& j) { j["kind"] = "run_shell"; })
            .find("unknown value \"run_shell\"") != std::string::npos);
  CHECK(ErrorAfter(u, [](Json& j) { j["schema"] = 2; })
            .find("unsupported schema version 2") != std::string::npos);
  CHECK(ErrorAfter(u, [](Json& j) { j["seed"] = int64_t{1} << 60; })
            .find("unit.seed: out of range") != std::string::npos);
}

TEST_CASE("WorkUnit checks kind-specific ranges", "[protocol]") {
  WorkUnit t = MakeTrainUnit();
  CHECK(ErrorAfter(t, [](Json& j) { j["epochs"]["end"] = 4; }) ==
        "unit.epochs.end: must be greater than begin");
  CHECK(ErrorAfter(t, [](Json& j) { j.erase("epochs"); }) == "unit.epochs: missing field");
  CHECK(ErrorAfter(t, [](Json& j) { j["slab"] = Json::object(); }) == "unit.slab: unknown field");

  WorkUnit s = MakeSlabUnit();
  CHECK(ErrorAfter(s, [](Json& j) { j["slab"]["halo_before"] = 17; })
            .find("unit.slab.halo_before: out of range [0, 16]") != std::string::npos);
  CHECK(ErrorAfter(s, [](Json& j) { j["slab"]["z_end"] = 16; }) ==
        "unit.slab.z_end: must be greater than z_begin");
  CHECK(ErrorAfter(s, [](Json& j) { j["seed"] = 1; }) == "unit.seed: unknown field");
  CHECK(ErrorAfter(s, [](Json& j) { j["slab"]["extra"] = 1; }) == "unit.slab.extra: unknown field");

  // review_slices: increasing slices, each inside the region it needs.
  WorkUnit r = MakeSlabUnit();
  r.kind = UnitKind::kReviewSlices;
  r.slab.reset();
  r.review_slices = {3, 9, 40};
  r.region = SliceRegion::Around(r.review_slices, 1, 64);
  REQUIRE(WorkUnit::FromJson(r.ToJson()).value() == r);
  CHECK(ErrorAfter(r, [](Json& j) { j["slices"] = Json::array({9, 3}); }) ==
        "unit.slices[1] must be a slice after the one before");
  CHECK(ErrorAfter(r, [](Json& j) { j["slices"] = Json::array({3, 20}); }) ==
        "unit.slices: slice 20 is outside the region");
  CHECK(ErrorAfter(r, [](Json& j) { j["slices"] = Json::array(); }) == "unit.slices must name at least one slice");
  CHECK(ErrorAfter(r, [](Json& j) { j.erase("region"); }) == "unit.region is required for review_slices");
  CHECK(ErrorAfter(r, [](Json& j) { j["slab"] = Json::object(); }) == "unit.slab: unknown field");
}

TEST_CASE("slice regions: built, looked up, validated, and carried by units", "[protocol]") {
  const SliceRegion r = SliceRegion::Around({10, 2, 11, 40}, 1, 41);
  CHECK(r.runs == std::vector<std::pair<int64_t, int64_t>>{{1, 4}, {9, 13}, {39, 41}});
  CHECK(r.slices() == 9);
  CHECK(r.Local(9) == 3);
  CHECK(r.Local(8) == -1);
  CHECK(r.Global(3) == 9);
  CHECK(r.Global(8) == 40);
  CHECK(SliceRegion::Whole(5).whole());
  CHECK_FALSE(r.whole());
  CHECK(r.Validate().ok());
  SliceRegion touching = r;
  touching.runs[1].first = 4;  // adjacent runs must be merged
  CHECK_THAT(touching.Validate("unit.region").message(), Catch::Contains("unit.region.runs[1] [4, 13)"));

  WorkUnit train = MakeTrainUnit();
  train.region = r;
  CheckRoundTrip(train);
  CHECK_THAT(ErrorAfter(train, [](Json& j) { j["region"]["runs"][0] = Json::array({5, 2}); }),
             Catch::Contains("region.runs[0]"));
  CHECK_THAT(ErrorAfter(train, [](Json& j) { j["region"]["runs"][0] = "1-4"; }),
             Catch::Contains("must be [first, end) slices"));
  CHECK_THAT(ErrorAfter(train, [](Json& j) { j["region"]["depth"] = 0; }), Catch::Contains("region.depth"));
  CHECK_THAT(ErrorAfter(train, [](Json& j) { j["region"]["extra"] = 1; }), Catch::Contains("extra"));
  // A slab's region is its slices, nothing else.
  WorkUnit slab = MakeSlabUnit();
  slab.region = SliceRegion::Range(1000, slab.slab->read_begin(), slab.slab->read_end());
  CheckRoundTrip(slab);
  CHECK_THAT(ErrorAfter(slab, [](Json& j) { j["region"]["runs"][0][1] = j["region"]["runs"][0][1].get<int64_t>() - 1; }),
             Catch::Contains("must be the slab's slices"));
}

TEST_CASE("a series' regions keep context inside each time point", "[protocol]") {
  // 3 time points of 10 slices: slice 10 is the first of time point 1, slice 19 its last.
  const SliceRegion r = SliceRegion::Around({10, 19, 25}, 2, 30, 3);
  CHECK(r.FrameDepth() == 10);
  CHECK(r.FrameStart(19) == 10);
  CHECK(r.runs == std::vector<std::pair<int64_t, int64_t>>{{10, 13}, {17, 20}, {23, 28}});  // not 8..12, nor 17..22
  CHECK(r.Validate().ok());
  WorkUnit train = MakeTrainUnit();
  train.region = r;
  CheckRoundTrip(train);
  CHECK(train.ToJson()["region"]["frames"] == 3);
  CHECK_FALSE(MakeTrainUnit().ToJson().contains("frames"));
  CHECK_THAT(ErrorAfter(train, [](Json& j) { j["region"]["frames"] = 4; }),
             Catch::Contains("region.frames 4 does not divide its 30 slices"));
  CHECK_THAT(ErrorAfter(train, [](Json& j) { j["region"]["frames"] = 0; }), Catch::Contains("region.frames"));
  // Slabs of a series: per time point, halos clipped to it, over any range of slices.
  const std::vector<SlabRange> slabs = PlanSeriesSlabs(30, 3, 5, 30, 4, 2).value();
  std::vector<std::vector<int64_t>> got;
  for (const SlabRange& s : slabs) got.push_back({s.z_begin, s.z_end, s.halo_before, s.halo_after});
  CHECK(got == std::vector<std::vector<int64_t>>{{5, 9, 2, 1}, {9, 10, 2, 0}, {10, 14, 0, 2}, {14, 18, 2, 2},
                                                 {18, 20, 2, 0}, {20, 24, 0, 2}, {24, 28, 2, 2}, {28, 30, 2, 0}});
  CHECK(PlanSeriesSlabs(30, 1, 0, 30, 8, 3).value() == PlanSlabs(30, 8, 3).value());
  CHECK_THAT(PlanSeriesSlabs(30, 4, 0, 30, 8, 3).status().message(), Catch::Contains("30 slices are not 4 time points"));
  CHECK_THAT(PlanSeriesSlabs(30, 3, 20, 31, 8, 3).status().message(), Catch::Contains("not inside"));
}

TEST_CASE("blob references and names are validated", "[protocol]") {
  WorkUnit u = MakeTrainUnit();
  CHECK(ErrorAfter(u, [](Json& j) { j["inputs"]["image"]["sha256"] = std::string(64, 'A'); })
            .find("unit.inputs.image.sha256: must be a SHA-256 digest") != std::string::npos);
  CHECK(ErrorAfter(u, [](Json& j) { j["inputs"]["image"]["size"] = -1; })
            .find("unit.inputs.image.size: out of range") != std::string::npos);
  CHECK(ErrorAfter(u, [](Json& j) { j["inputs"]["../x"] = j["inputs"]["image"]; })
            .find("invalid name \"../x\"") != std::string::npos);
  CHECK(ErrorAfter(u, [](Json& j) { j["inputs"]["image"]["url"] = std::string(3000, 'u'); })
            .find("exceeds the limit") != std::string::npos);
}

TEST_CASE("oversize configurations are refused", "[protocol]") {
  WorkUnit u = MakeTrainUnit();
  CHECK(ErrorAfter(u, [](Json& j) { j["config"]["blob"] = std::string(300 * 1024, 'x'); })
            .find("exceeds the limit of 262144") != std::string::npos);
  CHECK(ErrorAfter(u, [](Json& j) { j["config"] = Json::array(); }) ==
        "unit.config: expected object, got array");
}

TEST_CASE("heartbeat and result numbers are range-checked", "[protocol]") {
  Heartbeat hb;
  hb.lease_id = "l";
  hb.node_id = "n";
  CHECK(ErrorAfter(hb, [](Json& j) { j["progress"] = 1.5; })
            .find("heartbeat.progress: out of range") != std::string::npos);
  CHECK(ErrorAfter(hb, [](Json& j) { j["metrics"]["loss"] = "low"; })
            .find("metric \"loss\" must be a number") != std::string::npos);
  Lease lease{"l", "u", "n", 100, 50};
  Json lj = lease.ToJson();
  CHECK(Lease::FromJson(lj).status().message() ==
        "lease.deadline: must not be before issued_at");
}

TEST_CASE("ParseMessage reports syntax errors as INVALID_ARGUMENT", "[protocol]") {
  StatusOr<WorkUnit> r = ParseMessage<WorkUnit>("{\"schema\":1,");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
  CHECK(r.status().message().find("malformed JSON") != std::string::npos);
}

}  // namespace
}  // namespace idlegrid
