// The work queue on a real SQLite file: splitting, FIFO, capability matching, leases,
// checkpoints, expiry, aborts, assimilation, cancellation, persistence.
#include <catch2/catch.hpp>

#include "idlegrid/shared/envelope.h"
#include "server/server_fixtures.h"

namespace idlegrid {
namespace {

using testing::Must;
using testing::Node;
using testing::QueueFixture;
using testing::Ramp;
using testing::TinyConfig;

struct Leased {
  SignedUnit env;
  std::string node;
};

Leased MustLease(server::Queue& q, const server::NodeCredentials& n, const NodeInfo& info = Node()) {
  std::optional<SignedUnit> env = Must(q.Lease(n.node_id, info));
  REQUIRE(env.has_value());
  return {*env, n.node_id};
}

// An epoch's metrics as the worker reports them; mean Dice -1 = not validated.
models::EpochMetrics Epoch(int64_t epoch, double mean_dice, double train_loss) {
  models::EpochMetrics m;
  m.epoch = epoch;
  m.train_loss = train_loss;
  m.mean_dice = mean_dice;
  if (mean_dice >= 0) m.dice = m.iou = {mean_dice};
  return m;
}

Result TrainResult(QueueFixture& f, const Leased& l, const std::vector<models::EpochMetrics>& history,
                   bool with_model) {
  Result r;
  r.lease_id = l.env.lease_id;
  r.unit_id = l.env.unit.unit_id;
  r.node_id = l.node;
  r.epochs_done = l.env.unit.epochs->end;
  r.outputs["checkpoint"] = f.PutBytes("checkpoint of " + r.unit_id);
  r.outputs["metrics"] = f.PutBytes(Json{{"history", models::HistoryToJson(history)}}.dump());
  if (with_model) r.outputs["model"] = f.PutBytes("model of " + r.unit_id);
  return r;
}

Result TrainResult(QueueFixture& f, const Leased& l, double dice, bool with_model) {
  return TrainResult(f, l, {Epoch(1, dice, 1 - dice)}, with_model);
}

// A slab's result: output `name` holds the core slices of `source` (halos dropped).
Result SlabResult(QueueFixture& f, const SignedUnit& env, const std::string& node_id, const std::string& name,
                  const std::function<Volume(const SlabRange&)>& source) {
  SlabRange core = *env.unit.slab;
  core.halo_before = core.halo_after = 0;
  Result r;
  r.lease_id = env.lease_id;
  r.unit_id = env.unit.unit_id;
  r.node_id = node_id;
  r.outputs[name] = f.PutVolume(source(core));
  return r;
}

// TinyConfig made a denoiser.
models::ModelConfig TinyDenoiser(const std::string& name, int64_t epochs) {
  models::ModelConfig c = TinyConfig(name, epochs);
  c.task = models::Task::kDenoise;
  c.num_classes = 0;
  c.class_weights.clear();
  c.class_names.clear();
  c.norm_layer = "none";
  return c;
}

Json JobView(QueueFixture& f, const std::string& job) { return Must(f.queue->JobStatus(job)); }

std::string UnitState(QueueFixture& f, const std::string& job, const std::string& unit_id) {
  const Json view = JobView(f, job);
  for (const Json& u : view["units"]) {
    if (u["unit_id"] == unit_id) return u["state"];
  }
  return "absent";
}

TEST_CASE("a train job becomes a chain of units that hand their checkpoints on", "[server][queue]") {
  QueueFixture f;
  auto node = f.Enroll();
  const std::string job = f.SubmitTrain(TinyConfig("m", 5), 2, Ramp(4, 32, 32), Ramp(4, 32, 32));
  Json s = JobView(f, job);
  REQUIRE(s["units"].size() == 3);  // epochs 0-2, 2-4, 4-5
  CHECK(s["units"][0]["epochs"] == Json::array({0, 2}));
  CHECK(s["units"][2]["epochs"] == Json::array({4, 5}));
  CHECK(s["units"][0]["state"] == "ready");
  CHECK(s["units"][1]["state"] == "waiting");

  Leased a = MustLease(*f.queue, node);
  CHECK(a.env.unit.epochs->begin == 0);
  CHECK(a.env.unit.inputs.count("checkpoint") == 0);
  // Only the chain's first unit is ready: nothing else to lease.
  CHECK_FALSE(Must(f.queue->Lease(node.node_id, Node())).has_value());
  Result r = TrainResult(f, a, 0.5, false);
  Must(f.queue->Complete(node.node_id, r));
  Leased b = MustLease(*f.queue, node);
  CHECK(b.env.unit.epochs->begin == 2);
  REQUIRE(b.env.unit.inputs.count("checkpoint") == 1);
  CHECK(b.env.unit.inputs.at("checkpoint").sha256 == r.outputs["checkpoint"].sha256);
  Must(f.queue->Complete(node.node_id, TrainResult(f, b, 0.6, false)));
  Leased c = MustLease(*f.queue, node);
  // The chain's last unit must return the model package.
  Status missing = f.queue->Complete(node.node_id, TrainResult(f, c, 0.7, false));
  CHECK(missing.code() == StatusCode::kInvalidArgument);
  CHECK(UnitState(f, job, c.env.unit.unit_id) == "leased");
  Result last = TrainResult(f, c, 0.7, true);
  Must(f.queue->Complete(node.node_id, last));
  s = JobView(f, job);
  CHECK(s["state"] == "done");
  CHECK(s["progress"] == 1.0);
  CHECK(s["outputs"]["model"]["sha256"] == last.outputs["model"].sha256);
}

// Labels on slice `z` alone (classes 1 and 2 in alternate pixels).
Volume LabelsOn(int64_t depth, int64_t z) {
  Volume l = Must(Volume::Create({depth, 32, 32, 1}, DType::kUInt8));
  for (int64_t i = 0; i < 32 * 32; ++i) l.slice_bytes_at(z)[i] = static_cast<uint8_t>(1 + i % 2);
  return l;
}

TEST_CASE("units carry their region, and their inputs are cut to it once", "[server][queue]") {
  QueueFixture f;
  auto node = f.Enroll();
  const Volume image = Ramp(20, 32, 32), labels = LabelsOn(20, 5);
  models::ModelConfig c = TinyConfig("m", 1);
  c.architecture = "unet25d";
  c.context_slices = 2;
  const std::string job = f.SubmitTrain(c, 1, image, labels);
  CHECK(JobView(f, job)["units"][0]["region"] == SliceRegionToJson(SliceRegion::Range(20, 3, 8)));
  Leased a = MustLease(*f.queue, node);
  REQUIRE(a.env.unit.region.has_value());
  CHECK(*a.env.unit.region == SliceRegion::Range(20, 3, 8));  // slice 5 and the 2.5D context
  const std::string image_cut = Must(f.blobs->PathOf(a.env.unit.inputs.at("image").sha256));
  CHECK(Must(ReadTiff(image_cut)) == Must(ExtractRegion(image, *a.env.unit.region)));
  const std::string labels_cut = Must(f.blobs->PathOf(a.env.unit.inputs.at("labels").sha256));
  CHECK(Must(ReadTiff(labels_cut)) == Must(ExtractRegion(labels, *a.env.unit.region)));
  CHECK(Must(ProbeTiff(labels_cut)).shape.z == 5);
  // The same job again reuses the cuts.
  const std::string again = f.SubmitTrain(c, 1, image, labels);
  Must(f.queue->Cancel(job));
  Leased b = MustLease(*f.queue, node);
  CHECK(b.env.unit.job_id == again);
  CHECK(b.env.unit.inputs.at("image") == a.env.unit.inputs.at("image"));
  // A region that is the whole volume needs no cut: the unit points at the upload.
  const std::string whole = f.SubmitTrain(TinyConfig("m", 1), 1, Ramp(3, 32, 32), Ramp(3, 32, 32));
  Must(f.queue->Cancel(again));
  Leased w = MustLease(*f.queue, node);
  CHECK(w.env.unit.job_id == whole);
  CHECK(w.env.unit.region->whole());
}

TEST_CASE("preparation and assimilation run in the background when a wakeup is set", "[server][queue]") {
  QueueFixture f;
  int wakes = 0;
  f.queue->SetWakeup([&] { ++wakes; });
  auto node = f.Enroll();
  const std::string job = f.SubmitTrain(TinyConfig("m", 1), 1, Ramp(6, 32, 32), LabelsOn(6, 2));
  CHECK(wakes == 1);
  CHECK(JobView(f, job)["units"][0]["state"] == "preparing");
  CHECK_FALSE(Must(f.queue->Lease(node.node_id, Node())).has_value());  // nothing to lease yet
  Must(f.queue->PreparePending());
  Leased a = MustLease(*f.queue, node);
  Must(f.queue->Complete(node.node_id, TrainResult(f, a, 0.5, true)));
  CHECK(wakes == 2);
  CHECK(JobView(f, job)["state"] == "running");  // the complete request did not assimilate
  Must(f.queue->AssimilatePending());
  CHECK(JobView(f, job)["state"] == "done");

  // A cut that cannot be made fails its job with the reason, and the rest goes on.
  const std::string broken = f.SubmitTrain(TinyConfig("m", 1), 1, Ramp(7, 32, 32), LabelsOn(7, 2));
  const Json plan = JobView(f, broken);
  REQUIRE(plan["units"][0]["state"] == "preparing");
  std::string image_sha;
  for (const std::string& sha : Must(f.blobs->List())) {
    StatusOr<TiffInfo> info = ProbeTiff(Must(f.blobs->PathOf(sha)));
    if (info.ok() && info->shape.z == 7 && info->dtype == DType::kUInt8 && info->shape.c == 1 &&
        Must(ReadTiff(Must(f.blobs->PathOf(sha)))) == Ramp(7, 32, 32)) {
      image_sha = sha;
    }
  }
  REQUIRE_FALSE(image_sha.empty());
  Must(f.blobs->Remove(image_sha));
  Must(f.queue->PreparePending());
  const Json failed = JobView(f, broken);
  CHECK(failed["state"] == "failed");
  CHECK_THAT(failed["error"].get<std::string>(), Catch::Contains("cannot cut input \"image\""));
}

TEST_CASE("a server that stops leaves a cut for its next start, without failing the job", "[server][queue]") {
  QueueFixture f;
  f.queue->SetWakeup([] {});
  auto node = f.Enroll();
  const std::string job = f.SubmitTrain(TinyConfig("m", 1), 1, Ramp(6, 32, 32), LabelsOn(6, 2));
  f.queue->StopBackground();
  CHECK(f.queue->PreparePending().code() == StatusCode::kCancelled);
  CHECK(JobView(f, job)["state"] == "queued");
  CHECK(JobView(f, job)["units"][0]["state"] == "preparing");
  f.Reopen();  // the next start
  Must(f.queue->PreparePending());
  CHECK(MustLease(*f.queue, node).env.unit.job_id == job);
}

TEST_CASE("a completion retried with the same outputs is accepted once, others are refused", "[server][queue]") {
  QueueFixture f;
  auto node = f.Enroll();
  f.SubmitTrain(TinyConfig("m", 2), 1, Ramp(2, 32, 32), Ramp(2, 32, 32));
  Leased a = MustLease(*f.queue, node);
  const Result r = TrainResult(f, a, 0.5, false);
  Must(f.queue->Complete(node.node_id, r));
  Must(f.queue->Complete(node.node_id, r));  // the node's request timed out after the commit
  Result other = TrainResult(f, a, 0.6, false);
  CHECK(f.queue->Complete(node.node_id, other).code() == StatusCode::kFailedPrecondition);
  Leased b = MustLease(*f.queue, node);  // the chain moved on once, from the first result
  CHECK(b.env.unit.inputs.at("checkpoint").sha256 == r.outputs.at("checkpoint").sha256);
  CHECK_FALSE(Must(f.queue->Lease(node.node_id, Node())).has_value());
}

TEST_CASE("leased units are signed envelopes bound to the lease and node", "[server][queue]") {
  QueueFixture f;
  auto node = f.Enroll();
  auto other = f.Enroll();
  f.SubmitTrain(TinyConfig("m", 2), 2, Ramp(2, 32, 32), Ramp(2, 32, 32));
  Leased l = MustLease(*f.queue, node);
  const std::string text = l.env.ToJson().dump();
  VerifyOptions vo;
  vo.node_id = node.node_id;
  vo.now = f.now;
  StatusOr<SignedUnit> ok = VerifyUnit(text, f.queue->public_key(), vo);
  REQUIRE(ok.ok());
  CHECK(ok->unit.inputs.at("image").size > 0);
  vo.node_id = other.node_id;
  CHECK(VerifyUnit(text, f.queue->public_key(), vo).status().code() == StatusCode::kPermissionDenied);
}

TEST_CASE("jobs are served first in, first out", "[server][queue]") {
  QueueFixture f;
  auto node = f.Enroll();
  const std::string first = f.SubmitTrain(TinyConfig("first", 1), 1, Ramp(2, 32, 32), Ramp(2, 32, 32));
  f.now += 5;
  const std::string second = f.SubmitTrain(TinyConfig("second", 1), 1, Ramp(2, 32, 32), Ramp(2, 32, 32));
  CHECK(MustLease(*f.queue, node).env.unit.job_id == first);
  CHECK(MustLease(*f.queue, node).env.unit.job_id == second);
}

TEST_CASE("units go only to nodes that can run them", "[server][queue]") {
  QueueFixture f;
  f.options.unit_threads = 4;
  f.Reopen();
  auto node = f.Enroll();
  f.SubmitTrain(TinyConfig("m", 1), 1, Ramp(2, 32, 32), Ramp(2, 32, 32));
  // Too few cores for a 4-thread unit, then too little memory.
  CHECK_FALSE(Must(f.queue->Lease(node.node_id, Node(2, 16))).has_value());
  NodeInfo tiny = Node(8, 0);
  tiny.ram_bytes = 100 << 20;
  CHECK_FALSE(Must(f.queue->Lease(node.node_id, tiny)).has_value());
  Leased l = MustLease(*f.queue, node, Node(8, 16));
  CHECK(l.env.unit.threads == 4);
  CHECK(l.env.unit.min_memory_bytes > tiny.ram_bytes);
}

TEST_CASE("a missed deadline requeues the unit from its latest uploaded checkpoint", "[server][queue]") {
  QueueFixture f;
  auto a = f.Enroll();
  auto b = f.Enroll();
  const std::string job = f.SubmitTrain(TinyConfig("m", 6), 6, Ramp(2, 32, 32), Ramp(2, 32, 32));
  Leased l = MustLease(*f.queue, a);
  Heartbeat hb;
  hb.lease_id = l.env.lease_id;
  hb.node_id = a.node_id;
  hb.progress = 0.5;
  hb.epoch = 3;
  // A checkpoint that was never uploaded is refused and changes nothing.
  hb.checkpoint = BlobRef{std::string(64, 'a'), 10, ""};
  CHECK(f.queue->Beat(a.node_id, hb).status().code() == StatusCode::kFailedPrecondition);
  hb.checkpoint = f.PutBytes("checkpoint at epoch 3");
  HeartbeatReply reply = Must(f.queue->Beat(a.node_id, hb));
  CHECK(reply.action == HeartbeatAction::kContinue);
  CHECK(reply.deadline == f.now + f.options.lease_seconds);
  // Heartbeats extend the lease: just before the deadline nothing expires.
  f.now += f.options.lease_seconds - 1;
  CHECK(Must(f.queue->ExpireLeases()) == 0);
  f.now += 2;
  CHECK(Must(f.queue->ExpireLeases()) == 1);
  Json s = JobView(f, job);
  CHECK(s["units"][0]["state"] == "ready");
  CHECK(s["units"][0]["epochs_done"] == 3);
  CHECK(s["units"][0]["failures"] == 1);
  // The late node's heartbeat is told to stop.
  CHECK(Must(f.queue->Beat(a.node_id, hb)).action == HeartbeatAction::kAbort);
  Leased again = MustLease(*f.queue, b);
  CHECK(again.env.unit.unit_id == l.env.unit.unit_id);
  CHECK(again.env.unit.inputs.at("checkpoint").sha256 == hb.checkpoint->sha256);
  CHECK(again.env.lease_id != l.env.lease_id);
  // The old lease can no longer complete.
  CHECK_FALSE(f.queue->Complete(a.node_id, TrainResult(f, l, 0.9, true)).ok());
}

TEST_CASE("a graceful abort requeues from the checkpoint without counting a failure", "[server][queue]") {
  QueueFixture f;
  auto a = f.Enroll();
  const std::string job = f.SubmitTrain(TinyConfig("m", 4), 4, Ramp(2, 32, 32), Ramp(2, 32, 32));
  for (int i = 0; i < 5; ++i) {  // more than max_failures graceful stops
    Leased l = MustLease(*f.queue, a);
    const BlobRef cp = f.PutBytes("checkpoint " + std::to_string(i));
    Must(f.queue->Abort(a.node_id, l.env.lease_id, "the user came back", false, cp));
    Leased next = MustLease(*f.queue, a);
    CHECK(next.env.unit.inputs.at("checkpoint").sha256 == cp.sha256);
    Must(f.queue->Abort(a.node_id, next.env.lease_id, "the user came back", false, std::nullopt));
  }
  Json s = JobView(f, job);
  CHECK(s["state"] == "running");
  CHECK(s["units"][0]["state"] == "ready");
  CHECK(s["units"][0]["failures"] == 0);
}

TEST_CASE("failures are bounded: then the job fails with the reason", "[server][queue]") {
  QueueFixture f;
  auto a = f.Enroll();
  const std::string job = f.SubmitTrain(TinyConfig("m", 2), 2, Ramp(2, 32, 32), Ramp(2, 32, 32));
  for (int i = 0; i < f.options.max_failures; ++i) {
    Leased l = MustLease(*f.queue, a);
    Must(f.queue->Abort(a.node_id, l.env.lease_id, "worker exit 4: a class has no labels", true, std::nullopt));
  }
  Json s = JobView(f, job);
  CHECK(s["state"] == "failed");
  CHECK_THAT(s["error"].get<std::string>(), Catch::Contains("a class has no labels"));
  CHECK_FALSE(Must(f.queue->Lease(a.node_id, Node())).has_value());
}

TEST_CASE("a node can touch only its own leases", "[server][queue]") {
  QueueFixture f;
  auto a = f.Enroll();
  auto b = f.Enroll();
  const std::string job = f.SubmitTrain(TinyConfig("m", 1), 1, Ramp(2, 32, 32), Ramp(2, 32, 32));
  Leased l = MustLease(*f.queue, a);
  Heartbeat hb;
  hb.lease_id = l.env.lease_id;
  hb.node_id = b.node_id;
  CHECK(f.queue->Beat(b.node_id, hb).status().code() == StatusCode::kPermissionDenied);
  Result r = TrainResult(f, l, 0.9, true);
  r.node_id = b.node_id;
  CHECK(f.queue->Complete(b.node_id, r).code() == StatusCode::kPermissionDenied);
  CHECK(f.queue->Abort(b.node_id, l.env.lease_id, "x", false, std::nullopt).code() == StatusCode::kPermissionDenied);
  CHECK(f.queue->Complete(b.node_id, TrainResult(f, l, 0.9, true)).code() == StatusCode::kPermissionDenied);
  CHECK(UnitState(f, job, l.env.unit.unit_id) == "leased");
  // Outputs that were never uploaded are refused; the unit stays completable.
  Result fake = TrainResult(f, l, 0.9, true);
  fake.outputs["model"] = BlobRef{std::string(64, 'b'), 5, ""};
  CHECK(f.queue->Complete(a.node_id, fake).code() == StatusCode::kFailedPrecondition);
  Must(f.queue->Complete(a.node_id, TrainResult(f, l, 0.9, true)));
  CHECK(JobView(f, job)["state"] == "done");
}

// A sweep of one-epoch candidates with these names over a Ramp of `depth` slices (labels alike).
Job SweepOf(QueueFixture& f, int64_t depth, const std::vector<std::string>& names) {
  Job job;
  job.kind = JobKind::kSweep;
  job.inputs["image"] = f.PutVolume(Ramp(depth, 16, 16));
  job.inputs["labels"] = f.PutVolume(Ramp(depth, 16, 16));
  Json candidates = Json::array();
  for (const std::string& n : names) candidates.push_back(models::ConfigToJson(TinyConfig(n, 1)));
  job.config = {{"candidates", candidates}};
  return job;
}

// Submits a sweep of three one-epoch candidates a, b, c, completes each with its history and
// returns the names in ranking order.
std::vector<std::string> RankSweep(const std::map<std::string, std::vector<models::EpochMetrics>>& history) {
  QueueFixture f;
  auto node = f.Enroll();
  const std::string id = Must(f.queue->Submit(SweepOf(f, 4, {"a", "b", "c"})));
  for (int i = 0; i < 3; ++i) {
    Leased l = MustLease(*f.queue, node);
    Must(f.queue->Complete(node.node_id, TrainResult(f, l, history.at(l.env.unit.config["model"]["name"]), true)));
  }
  const Json view = JobView(f, id);
  std::vector<std::string> names;
  for (const Json& r : view["summary"]["ranking"]) names.push_back(r["name"]);
  return names;
}

TEST_CASE("a sweep ranks by the last validated epoch, or by training loss when none was validated", "[server][queue]") {
  // Refit epochs (the validation strokes train) report no Dice; the score before them stands.
  CHECK(RankSweep({{"a", {Epoch(1, 0.90, 0.3), Epoch(2, -1, 0.2)}},
                   {"b", {Epoch(1, 0.80, 0.3), Epoch(2, -1, 0.1)}},
                   {"c", {Epoch(1, 0.95, 0.4), Epoch(2, -1, 0.3)}}}) ==
        std::vector<std::string>{"c", "a", "b"});
  // Nothing held out (or denoising): the lowest final training loss first.
  CHECK(RankSweep({{"a", {Epoch(1, -1, 0.3)}}, {"b", {Epoch(1, -1, 0.1)}}, {"c", {Epoch(1, -1, 0.2)}}}) ==
        std::vector<std::string>{"b", "c", "a"});
}

// Completes a review unit as a worker would: per slice z a map of value z and the entropy
// `entropy(z)`; each model's agreement from `agree` (model input -> share), else 1 for the
// first model and 0.5 for the others.
Result ReviewResult(QueueFixture& f, const SignedUnit& env, const std::string& node_id,
                    const std::function<double(int64_t)>& entropy, const std::map<std::string, double>& agree = {}) {
  const WorkUnit& u = env.unit;
  const auto n = static_cast<int64_t>(u.review_slices.size());
  Volume map = Volume::Create({n, 16, 16, 1}, DType::kUInt8).value();
  Json slices = Json::array(), agreement = Json::object();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t z = u.review_slices[static_cast<size_t>(i)];
    std::memset(map.slice_bytes_at(i), static_cast<int>(z), map.slice_bytes());
    slices.push_back({{"z", z}, {"entropy", entropy(z)}, {"disagreement", 0.1}, {"uncertain_fraction", 0.2}});
  }
  for (const Json& m : u.config["models"]) {
    const std::string name = m;
    agreement[name] = agree.count(name) ? agree.at(name) : agreement.empty() ? 1.0 : 0.5;
  }
  Result r;
  r.lease_id = env.lease_id;
  r.unit_id = u.unit_id;
  r.node_id = node_id;
  r.outputs["uncertainty"] = f.PutVolume(map);
  r.outputs["review"] = f.PutBytes(Json{{"slices", slices}, {"agreement", agreement}}.dump());
  return r;
}

TEST_CASE("a review whose scores do not match its slices fails the job, naming the unit", "[server][queue]") {
  QueueFixture f;
  auto node = f.Enroll();
  const std::string id = Must(f.queue->Submit(SweepOf(f, 6, {"a"})));
  Leased l = MustLease(*f.queue, node);
  Must(f.queue->Complete(node.node_id, TrainResult(f, l, 0.8, true)));
  // The first review unit scores a slice 1.5 (not in [0, 1]); the others are fine.
  std::string bad;
  for (int i = 0; i < 6; ++i) {
    auto env = Must(f.queue->Lease(node.node_id, Node()));
    if (!env) break;
    REQUIRE(env->unit.kind == UnitKind::kReviewSlices);
    if (bad.empty()) bad = env->unit.unit_id;
    const bool first = bad == env->unit.unit_id;
    Must(f.queue->Complete(node.node_id, ReviewResult(f, *env, node.node_id, [first](int64_t) { return first ? 1.5 : 0.5; })));
  }
  const Json s = JobView(f, id);
  CHECK(s["state"] == "failed");
  CHECK_THAT(s["error"].get<std::string>(), Catch::Contains(bad) && Catch::Contains("no valid scores"));
}

TEST_CASE("candidates tied on the painted slice are ranked by their agreement on the rest of the volume", "[server][queue]") {
  QueueFixture f;
  auto node = f.Enroll();
  Job job = SweepOf(f, 6, {"a", "b", "c"});
  job.config["infer"] = "labels";
  const std::string id = Must(f.queue->Submit(job));
  // a and b fit the painted slice alike (0.99, 0.985); c less (0.95). On the reviewed slices b
  // agrees with the others most, then a; c would agree more still, but is not tied.
  const std::map<std::string, double> dice{{"a", 0.99}, {"b", 0.985}, {"c", 0.95}};
  std::map<std::string, std::string> model_of;
  for (int i = 0; i < 3; ++i) {
    Leased l = MustLease(*f.queue, node);
    const std::string name = l.env.unit.config["model"]["name"];
    Result r = TrainResult(f, l, dice.at(name), true);
    model_of[name] = r.outputs["model"].sha256;
    Must(f.queue->Complete(node.node_id, r));
  }
  CHECK(JobView(f, id)["summary"]["ranking"][0]["name"] == "a");  // by validation alone
  const std::map<std::string, double> agree{{"model-c0", 0.80}, {"model-c1", 0.90}, {"model-c2", 0.95}};
  for (int i = 0; i < 6; ++i) {
    auto env = Must(f.queue->Lease(node.node_id, Node()));
    REQUIRE(env);
    if (env->unit.kind != UnitKind::kReviewSlices) {  // the review is done: inference with the new best
      CHECK(env->unit.inputs.at("model").sha256 == model_of["b"]);
      break;
    }
    Must(f.queue->Complete(node.node_id, ReviewResult(f, *env, node.node_id, [](int64_t) { return 0.3; }, agree)));
  }
  const Json s = JobView(f, id);
  const Json& ranking = s["summary"]["ranking"];
  REQUIRE(ranking.size() == 3);
  CHECK(ranking[0]["name"] == "b");
  CHECK(ranking[1]["name"] == "a");
  CHECK(ranking[2]["name"] == "c");
  CHECK(ranking[0]["agreement"] == 0.90);
  CHECK_THAT(ranking[0]["why"].get<std::string>(), Catch::Contains("agreement"));
  CHECK_THAT(ranking[2]["why"].get<std::string>(), Catch::Contains("below the best"));
  CHECK(s["outputs"]["model"]["sha256"] == model_of["b"]);
}

TEST_CASE("a sweep ranks its candidates and segments the volume with the best", "[server][queue]") {
  QueueFixture f;
  f.options.slab_target_voxels = 3 * 16 * 16;  // small slabs
  f.Reopen();
  auto node = f.Enroll();
  const Volume image = Ramp(10, 16, 16);
  Job job;
  job.kind = JobKind::kSweep;
  job.inputs["image"] = f.PutVolume(image);
  job.inputs["labels"] = f.PutVolume(Ramp(10, 16, 16));
  job.config = {{"candidates", {models::ConfigToJson(TinyConfig("a", 1)), models::ConfigToJson(TinyConfig("b", 1)),
                                models::ConfigToJson(TinyConfig("c", 1))}},
                {"infer", "labels"}};
  const std::string id = Must(f.queue->Submit(job));
  CHECK(JobView(f, id)["stages"] == 3);  // train, review, infer
  const std::map<std::string, double> dice{{"a", 0.7}, {"b", 0.9}, {"c", 0.8}};
  std::string best_model;
  for (int i = 0; i < 3; ++i) {
    Leased l = MustLease(*f.queue, node);
    const std::string name = l.env.unit.config["model"]["name"];
    Result r = TrainResult(f, l, dice.at(name), true);
    if (name == "b") best_model = r.outputs["model"].sha256;
    Must(f.queue->Complete(node.node_id, r));
  }
  Json s = JobView(f, id);
  CHECK(s["state"] == "running");
  CHECK(s["stage"] == 2);
  REQUIRE(s["summary"]["ranking"].size() == 3);
  CHECK(s["summary"]["ranking"][0]["name"] == "b");
  CHECK(s["summary"]["ranking"][2]["name"] == "a");
  CHECK(s["outputs"]["model"]["sha256"] == best_model);
  // Stage 2: every candidate reviews every slice of this small volume (in units that hold
  // their slices); slice 7 is the most uncertain, then 3.
  std::vector<int64_t> reviewed;
  for (int i = 0; i < 10 && reviewed.size() < 10; ++i) {
    auto env = Must(f.queue->Lease(node.node_id, Node()));
    REQUIRE(env);
    REQUIRE(env->unit.kind == UnitKind::kReviewSlices);
    CHECK(env->unit.config["models"].size() == 3);
    for (const char* m : {"model-c0", "model-c1", "model-c2"}) CHECK(env->unit.inputs.count(m) == 1);
    for (int64_t z : env->unit.review_slices) {
      reviewed.push_back(z);
      CHECK(env->unit.region->Local(z) >= 0);
    }
    Must(f.queue->Complete(node.node_id, ReviewResult(f, *env, node.node_id, [](int64_t z) {
      return z == 7 ? 0.9 : z == 3 ? 0.8 : 0.1;
    })));
  }
  CHECK(reviewed == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  s = JobView(f, id);
  CHECK(s["stage"] == 3);
  const Json& review = s["summary"]["review"];
  REQUIRE(review["where"].size() == 10);
  CHECK(review["where"][0] == 7);
  CHECK(review["where"][1] == 3);
  CHECK(review["slices"][7]["entropy"] == 0.9);
  CHECK(review["agreement"]["c0"] == 1.0);
  CHECK(review["agreement"]["c1"] == 0.5);
  const Volume maps = Must(ReadTiff(Must(f.blobs->PathOf(s["outputs"]["uncertainty"]["sha256"]))));
  REQUIRE(maps.shape() == VolumeShape{10, 16, 16, 1});
  for (int64_t z = 0; z < 10; ++z) CHECK(maps.slice_bytes_at(z)[5] == z);  // in Z order
  // Stage 3: slabs with the best model; each returns its core slices (here: the image's own).
  int slabs = 0;
  while (auto env = Must(f.queue->Lease(node.node_id, Node()))) {
    ++slabs;
    REQUIRE(env->unit.kind == UnitKind::kInferSlab);
    CHECK(env->unit.inputs.at("model").sha256 == best_model);
    Must(f.queue->Complete(node.node_id, SlabResult(f, *env, node.node_id, "labels", [&](const SlabRange& core) {
      return Must(ExtractSlab(image, core));
    })));
  }
  CHECK(slabs >= 3);
  s = JobView(f, id);
  REQUIRE(s["state"] == "done");
  const Volume stitched = Must(ReadTiff(Must(f.blobs->PathOf(s["outputs"]["labels"]["sha256"]))));
  REQUIRE(stitched.shape() == image.shape());
  CHECK(std::memcmp(stitched.bytes(), image.bytes(), image.size_bytes()) == 0);
  // The server remembers the configurations of the models it trained: an infer job needs
  // no configuration for them.
  Job infer;
  infer.kind = JobKind::kInfer;
  infer.inputs["model"] = BlobRef::FromJson(s["outputs"]["model"]).value();
  infer.inputs["volume"] = job.inputs["image"];
  CHECK(f.queue->Submit(infer).ok());
}

TEST_CASE("a denoise job trains a denoiser, then applies it to the whole volume", "[server][queue]") {
  QueueFixture f;
  f.options.slab_target_voxels = 4 * 32 * 32;
  f.Reopen();
  auto node = f.Enroll();
  const models::ModelConfig c = TinyDenoiser("n2n", 3);
  Job job;
  job.kind = JobKind::kDenoise;
  job.inputs["image"] = f.PutVolume(Ramp(8, 32, 32));
  job.config = {{"model", models::ConfigToJson(c)}};
  const std::string id = Must(f.queue->Submit(job));
  Json s = JobView(f, id);
  CHECK(s["stages"] == 2);
  REQUIRE(s["units"].size() == 1);
  Leased train = MustLease(*f.queue, node);
  CHECK(train.env.unit.kind == UnitKind::kTrainEpochs);
  CHECK(train.env.unit.inputs.count("labels") == 0);
  Result r = TrainResult(f, train, 0, true);
  Must(f.queue->Complete(node.node_id, r));
  s = JobView(f, id);
  CHECK(s["stage"] == 2);
  int64_t covered = 0;  // slices, over all slabs (leased units are not offered again)
  while (auto env = Must(f.queue->Lease(node.node_id, Node()))) {
    CHECK(env->unit.config["output"] == "denoised");
    CHECK(env->unit.inputs.at("model").sha256 == r.outputs["model"].sha256);
    CHECK(env->unit.slab->z_begin == covered);
    covered = env->unit.slab->z_end;
  }
  CHECK(covered == 8);
  CHECK(JobView(f, id)["units"].size() == 1 + 4);  // the training unit and min_slabs slabs
}

TEST_CASE("denoise first: the candidates are planned for the denoised volume, train on it and segment it", "[server][queue]") {
  QueueFixture f;
  f.options.slab_target_voxels = 4 * 32 * 32;
  f.Reopen();
  auto node = f.Enroll();
  const Volume image = Ramp(8, 32, 32);
  Volume labels = Must(Volume::Create({8, 32, 32, 1}, DType::kUInt8));
  for (int64_t i = 0; i < 32 * 32; ++i) labels.slice_bytes_at(3)[i] = (i % 32) < 16 ? 1 : 2;  // two classes on slice 3
  const models::ModelConfig d = TinyDenoiser("tiny-denoiser", 2);
  Job job;
  job.kind = JobKind::kSweep;
  job.inputs["image"] = f.PutVolume(image);
  job.inputs["labels"] = f.PutVolume(labels);
  job.config = {{"denoise", "first"}, {"denoiser", models::ConfigToJson(d)}, {"infer", "labels"}, {"review", false}};
  const std::string id = Must(f.queue->Submit(job));
  Json s = JobView(f, id);
  CHECK(s["stages"] == 4);
  CHECK(s["stage_names"][0] == "train the denoiser");
  CHECK(s["stage_names"][1] == "denoise");
  CHECK(s["stage_names"][3] == "segment");
  // Stage 1: the denoiser, trained without labels.
  Leased train = MustLease(*f.queue, node);
  CHECK(train.env.unit.config["model"]["name"] == "tiny-denoiser");
  CHECK(train.env.unit.inputs.count("labels") == 0);
  CHECK_FALSE(Must(f.queue->Lease(node.node_id, Node())).has_value());  // nothing else yet
  const Result denoiser = TrainResult(f, train, 0, true);
  Must(f.queue->Complete(node.node_id, denoiser));
  // Stage 2: the denoiser over the whole image. Each slab returns "denoised" slices on a
  // scale of its own (1000 + 10 v), so that what follows can be told apart from the image.
  s = JobView(f, id);
  REQUIRE(s["stage"] == 2);
  CHECK(s["outputs"]["denoiser"]["sha256"] == denoiser.outputs.at("model").sha256);
  CHECK_FALSE(s["outputs"].contains("model"));  // the segmentation model comes later
  auto denoised_of = [&](const SlabRange& core) {
    const Volume part = Must(ExtractSlab(image, core));
    Volume out = Must(Volume::Create(part.shape(), DType::kFloat32));
    for (int64_t i = 0; i < part.shape().elements(); ++i) out.data<float>()[i] = 1000.0f + 10.0f * part.data<uint8_t>()[i];
    return out;
  };
  std::vector<SignedUnit> leased;  // every slab first: completing the last starts stage 3
  while (auto env = Must(f.queue->Lease(node.node_id, Node()))) leased.push_back(*env);
  CHECK(leased.size() == 4);
  for (const SignedUnit* env = leased.data(); env != leased.data() + leased.size(); ++env) {
    REQUIRE(env->unit.config["output"] == "denoised");
    CHECK(env->unit.inputs.at("model").sha256 == denoiser.outputs.at("model").sha256);
    Must(f.queue->Complete(node.node_id, SlabResult(f, *env, node.node_id, "denoised", denoised_of)));
  }
  // Stage 3: the strategy's candidates, planned from the denoised volume's intensities.
  s = JobView(f, id);
  REQUIRE(s["stage"] == 3);
  REQUIRE(s["outputs"].contains("denoised"));
  CHECK(s["summary"]["denoiser"]["name"] == "tiny-denoiser");
  CHECK_THAT(s["stage_names"][2].get<std::string>(), Catch::StartsWith("train") && Catch::Contains("candidates"));
  int chains = 0;
  leased.clear();
  while (auto env = Must(f.queue->Lease(node.node_id, Node()))) leased.push_back(*env);
  for (const SignedUnit* env = leased.data(); env != leased.data() + leased.size(); ++env) {
    ++chains;
    REQUIRE(env->unit.kind == UnitKind::kTrainEpochs);
    CHECK(env->unit.inputs.count("labels") == 1);
    CHECK(env->unit.config["model"]["norm"]["clip_high"].get<double>() > 1000);  // not the image's 0-255
    const Volume held = Must(ReadTiff(Must(f.blobs->PathOf(env->unit.inputs.at("image").sha256))));
    CHECK(held.dtype() == DType::kFloat32);
    CHECK(held.data<float>()[0] >= 1000.0f);
    Leased l{*env, node.node_id};
    Must(f.queue->Complete(node.node_id, TrainResult(f, l, 0.5 + 0.1 * chains, true)));
  }
  CHECK(chains >= 2);
  // Stage 4: the best candidate segments the denoised volume.
  s = JobView(f, id);
  REQUIRE(s["stage"] == 4);
  CHECK(s["summary"]["ranking"].size() == static_cast<size_t>(chains));
  int slabs = 0;
  while (auto env = Must(f.queue->Lease(node.node_id, Node()))) {
    ++slabs;
    CHECK(env->unit.inputs.at("model").sha256 == s["outputs"]["model"]["sha256"]);
    const Volume held = Must(ReadTiff(Must(f.blobs->PathOf(env->unit.inputs.at("volume").sha256))));
    CHECK(held.dtype() == DType::kFloat32);
    Must(f.queue->Complete(node.node_id, SlabResult(f, *env, node.node_id, "labels", [&](const SlabRange& core) {
      return Must(ExtractSlab(labels, core));
    })));
  }
  CHECK(slabs >= 2);
  s = JobView(f, id);
  CHECK(s["state"] == "done");
  for (const char* out : {"denoised", "denoiser", "labels", "model"}) CHECK(s["outputs"].contains(out));
}

TEST_CASE("denoise first needs labels, and config.denoise is \"first\" or \"no\"", "[server][queue]") {
  QueueFixture f;
  Job job;
  job.kind = JobKind::kTrain;
  job.inputs["image"] = f.PutVolume(Ramp(4, 32, 32));
  job.config = {{"denoise", "first"}};
  CHECK_THAT(f.queue->Submit(job).status().message(), Catch::Contains("config.denoise") && Catch::Contains("labels"));
  job.inputs["labels"] = f.PutVolume(Ramp(4, 32, 32));
  job.config = {{"denoise", "yes"}};
  CHECK_THAT(f.queue->Submit(job).status().message(), Catch::Contains("config.denoise must be"));
}

TEST_CASE("a train job with an \"init\" model fine-tunes it with its recorded configuration", "[server][queue]") {
  QueueFixture f;
  auto node = f.Enroll();
  const std::string first = f.SubmitTrain(TinyConfig("chosen", 1), 1, Ramp(2, 32, 32), Ramp(2, 32, 32));
  Leased l = MustLease(*f.queue, node);
  Result r = TrainResult(f, l, 0.8, true);
  Must(f.queue->Complete(node.node_id, r));
  REQUIRE(JobView(f, first)["state"] == "done");
  Job tune;
  tune.kind = JobKind::kTrain;
  tune.inputs["image"] = f.PutVolume(Ramp(2, 32, 32));
  tune.inputs["labels"] = f.PutVolume(Ramp(2, 32, 32));
  tune.inputs["init"] = r.outputs["model"];
  Must(f.queue->Submit(tune));
  Leased t = MustLease(*f.queue, node);
  CHECK(t.env.unit.inputs.at("init").sha256 == r.outputs["model"].sha256);
  CHECK(t.env.unit.config["model"]["name"] == "chosen");
  // A model the server never trained needs its configuration.
  tune.inputs["init"] = f.PutBytes("some weights");
  CHECK_THAT(f.queue->Submit(tune).status().message(), Catch::Contains("not trained on this server"));
}

TEST_CASE("submissions with bad inputs are refused with a reason", "[server][queue]") {
  QueueFixture f;
  Job job;
  job.kind = JobKind::kTrain;
  job.inputs["image"] = f.PutVolume(Ramp(2, 32, 32));
  job.inputs["labels"] = f.PutVolume(Ramp(3, 32, 32));
  job.config = {{"model", models::ConfigToJson(TinyConfig("m", 1))}};
  CHECK_THAT(f.queue->Submit(job).status().message(), Catch::Contains("differ in shape"));
  job.inputs["labels"] = BlobRef{std::string(64, 'c'), 3, ""};
  CHECK_THAT(f.queue->Submit(job).status().message(), Catch::Contains("was not uploaded"));
  job.inputs["labels"] = f.PutBytes("not a tiff");
  CHECK_THAT(f.queue->Submit(job).status().message(), Catch::Contains("not a readable TIFF"));
  job.inputs["labels"] = f.PutVolume(Ramp(2, 32, 32));
  job.config["model"]["architecture"] = "resnet-from-the-internet";
  CHECK(f.queue->Submit(job).status().code() == StatusCode::kInvalidArgument);
  Job infer;
  infer.kind = JobKind::kInfer;
  infer.inputs["model"] = f.PutBytes("weights");
  infer.inputs["volume"] = f.PutVolume(Ramp(2, 32, 32));
  CHECK_THAT(f.queue->Submit(infer).status().message(), Catch::Contains("not trained on this server"));
  // A series' labels are a series of the same time points.
  job.config["model"] = models::ConfigToJson(TinyConfig("m", 1));
  job.inputs["image"] = f.PutVolume(Ramp(6, 32, 32), 3);
  job.inputs["labels"] = f.PutVolume(Ramp(2, 32, 32));
  CHECK_THAT(f.queue->Submit(job).status().message(),
             Catch::Contains("input \"labels\" is one volume of 2 slices, but the image is a series of 3 time points of 2 slices"));
  job.inputs["labels"] = f.PutVolume(Ramp(6, 32, 32), 2);
  CHECK_THAT(f.queue->Submit(job).status().message(), Catch::Contains("input \"labels\" has 2 time points (frames), the image 3"));
  CHECK(Must(f.queue->Jobs()).empty());
}

TEST_CASE("cancelling a job stops its units and tells their nodes", "[server][queue]") {
  QueueFixture f;
  auto a = f.Enroll();
  const std::string job = f.SubmitTrain(TinyConfig("m", 4), 2, Ramp(2, 32, 32), Ramp(2, 32, 32));
  Leased l = MustLease(*f.queue, a);
  Must(f.queue->Cancel(job));
  Heartbeat hb;
  hb.lease_id = l.env.lease_id;
  hb.node_id = a.node_id;
  HeartbeatReply r = Must(f.queue->Beat(a.node_id, hb));
  CHECK(r.action == HeartbeatAction::kAbort);
  CHECK(JobView(f, job)["state"] == "cancelled");
  CHECK_FALSE(Must(f.queue->Lease(a.node_id, Node())).has_value());
  CHECK(f.queue->Cancel(job).code() == StatusCode::kFailedPrecondition);
}

TEST_CASE("revoking a node refuses it and requeues its work", "[server][queue]") {
  QueueFixture f;
  auto a = f.Enroll();
  auto b = f.Enroll();
  const std::string job = f.SubmitTrain(TinyConfig("m", 1), 1, Ramp(2, 32, 32), Ramp(2, 32, 32));
  Leased l = MustLease(*f.queue, a);
  CHECK(Must(f.queue->AuthenticateNode(a.bearer())) == a.node_id);
  Must(f.queue->RevokeNode(a.node_id));
  CHECK(f.queue->AuthenticateNode(a.bearer()).status().code() == StatusCode::kUnauthenticated);
  CHECK(MustLease(*f.queue, b).env.unit.unit_id == l.env.unit.unit_id);
  CHECK(f.queue->AuthenticateNode(b.node_id + ":wrong").status().code() == StatusCode::kUnauthenticated);
  CHECK(f.queue->AuthenticateNode("nobody:x").status().code() == StatusCode::kUnauthenticated);
}

TEST_CASE("tokens are checked by kind and can be revoked", "[server][queue]") {
  QueueFixture f;
  const std::string admin = Must(f.queue->CreateToken(server::TokenKind::kAdmin, "a"));
  const std::string enroll = Must(f.queue->CreateToken(server::TokenKind::kEnroll, "e"));
  CHECK(f.queue->CheckToken(server::TokenKind::kAdmin, admin).ok());
  CHECK_FALSE(f.queue->CheckToken(server::TokenKind::kAdmin, enroll).ok());
  CHECK_FALSE(f.queue->Enroll(admin, Node()).ok());
  Must(f.queue->RevokeToken(enroll.substr(0, 8)));
  CHECK(f.queue->Enroll(enroll, Node()).status().code() == StatusCode::kUnauthenticated);
}

TEST_CASE("the queue survives a reopen with everything committed", "[server][queue]") {
  QueueFixture f;
  auto a = f.Enroll();
  const std::string job = f.SubmitTrain(TinyConfig("m", 4), 2, Ramp(2, 32, 32), Ramp(2, 32, 32));
  Leased l = MustLease(*f.queue, a);
  Must(f.queue->Complete(a.node_id, TrainResult(f, l, 0.5, false)));
  const Json before = JobView(f, job);
  f.Reopen();
  CHECK(JobView(f, job) == before);
  CHECK(Must(f.queue->IntegrityCheck()) == "ok");
  CHECK(Must(f.queue->AuthenticateNode(a.bearer())) == a.node_id);
  CHECK(MustLease(*f.queue, a).env.unit.epochs->begin == 2);
}

}  // namespace
}  // namespace idlegrid
