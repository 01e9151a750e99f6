// idlegrid-demo: the main job's end-to-end path as far as the foundation goes. It plays the
// server and two nodes in one process, through the real protocol pieces:
//   1. generates the bundled sample (3-phase volume, ground truth, ~50k painted pixels);
//   2. server: stores the volume as a blob, splits it into slabs with halos, and signs one
//      infer_slab unit envelope per slab for one of two nodes;
//   3. nodes: verify each envelope against the pinned key (a tampered and a replayed one are
//      shown being refused), check the blob hash, read only their slab of the TIFF, segment
//      it, and return the result as a blob;
//   4. server: verifies result hashes and stitches the slabs into labels.tif, checks the
//      stitched volume equals a whole-volume run, and scores it against the ground truth.
// Segmentation here is the nearest class mean of the painted pixels: the deep-learning
// models and the real server and nodes replace it as their issues land.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include <CLI/CLI.hpp>

#include "idlegrid/shared/blob_store.h"
#include "idlegrid/shared/envelope.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/sample_volume.h"
#include "idlegrid/shared/tiff_io.h"

namespace idlegrid {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Mean intensity of each painted class.
std::map<int, double> ClassMeans(const Volume& image, const Volume& scribbles) {
  std::map<int, double> sum, count;
  for (int64_t i = 0; i < image.shape().elements(); ++i) {
    int label = scribbles.data<uint8_t>()[i];
    if (label == 0) continue;
    sum[label] += image.GetAsFloat(i);
    count[label] += 1;
  }
  for (auto& [label, s] : sum) s /= count[label];
  return sum;
}

// Labels each voxel with the class whose mean is nearest to the voxel's 3x3x3 mean (the
// neighbourhood is why slabs need a halo of one slice).
Volume Segment(const Volume& slab, const std::map<int, double>& means) {
  const VolumeShape& s = slab.shape();
  Volume out = Volume::Create(s, DType::kUInt8).value();
  for (int64_t z = 0; z < s.z; ++z)
    for (int64_t y = 0; y < s.y; ++y)
      for (int64_t x = 0; x < s.x; ++x) {
        double sum = 0;
        int n = 0;
        for (int64_t dz = -1; dz <= 1; ++dz)
          for (int64_t dy = -1; dy <= 1; ++dy)
            for (int64_t dx = -1; dx <= 1; ++dx) {
              int64_t zz = z + dz, yy = y + dy, xx = x + dx;
              if (zz < 0 || yy < 0 || xx < 0 || zz >= s.z || yy >= s.y || xx >= s.x) continue;
              sum += slab.at<uint16_t>(zz, yy, xx);
              ++n;
            }
        double v = sum / n, best = 1e300;
        for (const auto& [label, mean] : means) {
          if (std::fabs(v - mean) < best) best = std::fabs(v - mean), out.at<uint8_t>(z, y, x) = static_cast<uint8_t>(label);
        }
      }
  return out;
}

int Fail(const Status& st) {
  std::fprintf(stderr, "idlegrid-demo: %s\n", st.ToString().c_str());
  return 1;
}

int Run(const std::string& out) {
  const int64_t kNow = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
  Json summary;
  auto t0 = Clock::now();
  std::printf("[1/4] generating the bundled sample...\n");
  SampleOptions options;
  StatusOr<MaterialsSample> sample = GenerateMaterialsSample(options);
  if (!sample.ok()) return Fail(sample.status());
  Status st = MakeDirs(out);
  if (st.ok()) st = WriteTiff(out + "/image.tif", sample->image);
  if (st.ok()) st = WriteTiff(out + "/truth.tif", sample->truth);
  if (st.ok()) st = WriteTiff(out + "/scribbles.tif", sample->scribbles);
  if (!st.ok()) return Fail(st);
  std::map<int, double> means = ClassMeans(sample->image, sample->scribbles);
  int64_t painted = 0;
  for (int64_t i = 0; i < sample->scribbles.shape().elements(); ++i) {
    painted += sample->scribbles.data<uint8_t>()[i] != 0;
  }
  std::printf("      %s uint16 volume, %lld pixels painted on slice %lld\n",
              options.shape.ToString().c_str(), static_cast<long long>(painted),
              static_cast<long long>(sample->label_slice));
  summary["sample"] = {{"shape", options.shape.ToString()}, {"painted_pixels", painted}};
  summary["seconds"]["sample"] = Seconds(t0);

  t0 = Clock::now();
  std::printf("[2/4] server: storing the volume and signing one unit per slab...\n");
  auto blobs = BlobStore::Open(out + "/server/blobs");
  if (!blobs.ok()) return Fail(blobs.status());
  StatusOr<BlobRef> volume_ref = (*blobs)->PutFile(out + "/image.tif");
  if (!volume_ref.ok()) return Fail(volume_ref.status());
  StatusOr<PrivateKey> key = PrivateKey::Generate();
  if (!key.ok()) return Fail(key.status());
  if (!(st = key->SavePem(out + "/server/signing.pem")).ok()) return Fail(st);
  // What a node pins at enrollment: the public key, from a file.
  if (!(st = WriteFileAtomic(out + "/node-pinned-key.pem", key->public_key().ToPem())).ok()) {
    return Fail(st);
  }
  Json means_json = Json::object();
  for (const auto& [label, mean] : means) means_json[std::to_string(label)] = mean;
  StatusOr<std::vector<SlabRange>> slabs = PlanSlabs(options.shape.z, 12, 1);
  if (!slabs.ok()) return Fail(slabs.status());
  std::vector<std::string> envelopes;
  const std::string nodes[2] = {"node-a", "node-b"};
  for (size_t i = 0; i < slabs->size(); ++i) {
    WorkUnit unit;
    unit.unit_id = "slab-" + std::to_string(i);
    unit.job_id = "demo";
    unit.kind = UnitKind::kInferSlab;
    unit.config = Json{{"method", "nearest-class-mean"}, {"class_means", means_json}};
    unit.inputs["volume"] = *volume_ref;
    unit.slab = (*slabs)[i];
    StatusOr<SignedUnit> env =
        SignUnit(unit, "lease-" + std::to_string(i), nodes[i % 2], kNow, kNow + 3600, *key);
    if (!env.ok()) return Fail(env.status());
    envelopes.push_back(CanonicalJson(env->ToJson()).value());
  }
  std::printf("      volume blob %s (%lld bytes), %zu slabs of <=12 slices with a 1-slice halo\n",
              volume_ref->sha256.substr(0, 12).c_str(), static_cast<long long>(volume_ref->size),
              slabs->size());
  summary["seconds"]["split_and_sign"] = Seconds(t0);

  t0 = Clock::now();
  std::printf("[3/4] nodes: verifying envelopes and running their slabs...\n");
  StatusOr<PublicKey> pinned = PublicKey::LoadPem(out + "/node-pinned-key.pem");
  if (!pinned.ok()) return Fail(pinned.status());
  ReplayGuard replay[2];
  {  // A unit altered in transit, and one replayed, are refused before anything runs.
    Json tampered = ParseJson(envelopes[0]).value();
    tampered["unit"]["slab"]["z_end"] = options.shape.z;
    VerifyOptions vo{nodes[0], kNow, nullptr};
    std::printf("      tampered envelope: %s\n",
                VerifyUnit(tampered.dump(), *pinned, vo).status().ToString().c_str());
  }
  std::vector<std::pair<SlabRange, BlobRef>> results;
  Json node_counts = Json::object();
  for (size_t i = 0; i < envelopes.size(); ++i) {
    int n = static_cast<int>(i % 2);
    VerifyOptions vo{nodes[n], kNow + 1, &replay[n]};
    StatusOr<SignedUnit> env = VerifyUnit(envelopes[i], *pinned, vo);
    if (!env.ok()) return Fail(env.status());
    if (i == 0) {
      std::printf("      replayed envelope: %s\n",
                  VerifyUnit(envelopes[0], *pinned, vo).status().ToString().c_str());
    }
    const WorkUnit& unit = env->unit;
    const BlobRef& in = unit.inputs.at("volume");
    if (!(st = (*blobs)->Verify(in.sha256)).ok()) return Fail(st);
    TiffReadOptions range;
    range.z_begin = unit.slab->read_begin();
    range.z_end = unit.slab->read_end();
    StatusOr<Volume> slab = ReadTiff((*blobs)->PathOf(in.sha256).value(), range);
    if (!slab.ok()) return Fail(slab.status());
    std::map<int, double> unit_means;
    for (const auto& [k, v] : unit.config["class_means"].items()) unit_means[std::stoi(k)] = v;
    Volume labels = Segment(*slab, unit_means);
    std::string result_path = out + "/" + nodes[n] + "-" + unit.unit_id + ".tif";
    if (!(st = WriteTiff(result_path, labels)).ok()) return Fail(st);
    StatusOr<BlobRef> result = (*blobs)->PutFile(result_path);
    if (!result.ok()) return Fail(result.status());
    std::remove(result_path.c_str());
    results.emplace_back(*unit.slab, *result);
    node_counts[nodes[n]] = node_counts.value(nodes[n], 0) + 1;
  }
  summary["units_per_node"] = node_counts;
  summary["seconds"]["nodes"] = Seconds(t0);

  t0 = Clock::now();
  std::printf("[4/4] server: stitching slab results into labels.tif...\n");
  auto writer = TiffWriter::Open(out + "/labels.tif", options.shape, DType::kUInt8);
  if (!writer.ok()) return Fail(writer.status());
  for (const auto& [slab, ref] : results) {
    StatusOr<std::string> bytes = (*blobs)->Read(ref.sha256, 1 << 30);
    if (!bytes.ok()) return Fail(bytes.status());
    if (Sha256Hex(*bytes) != ref.sha256) return Fail(DataLossError("result hash mismatch"));
    StatusOr<Volume> part = ReadTiffFromMemory(*bytes);
    if (!part.ok()) return Fail(part.status());
    // The node's result covers the slab with its halo; keep the core slices.
    StatusOr<Volume> inner =
        ExtractSlab(*part, SlabRange{slab.halo_before, slab.halo_before + slab.depth(), 0, 0});
    if (!inner.ok()) return Fail(inner.status());
    if (!(st = (*writer)->Append(*inner)).ok()) return Fail(st);
  }
  if (!(st = (*writer)->Close()).ok()) return Fail(st);
  StatusOr<Volume> stitched = ReadTiff(out + "/labels.tif");
  if (!stitched.ok()) return Fail(stitched.status());
  bool identical = *stitched == Segment(sample->image, means);
  std::printf("      stitched slabs %s the whole-volume result\n",
              identical ? "exactly equal" : "DIFFER FROM");
  Json dice = Json::object();
  for (int c = 1; c <= 3; ++c) {
    int64_t both = 0, a = 0, b = 0;
    for (int64_t i = 0; i < stitched->shape().elements(); ++i) {
      bool p = stitched->data<uint8_t>()[i] == c, t = sample->truth.data<uint8_t>()[i] == c;
      both += p && t;
      a += p;
      b += t;
    }
    dice[std::to_string(c)] = a + b ? 2.0 * both / static_cast<double>(a + b) : 1.0;
  }
  summary["dice_vs_truth"] = dice;
  summary["stitched_equals_whole_volume"] = identical;
  summary["seconds"]["stitch"] = Seconds(t0);
  summary["method"] = "nearest class mean (placeholder until the models issue lands)";
  if (!(st = WriteFileAtomic(out + "/summary.json", summary.dump(2) + "\n")).ok()) return Fail(st);
  std::printf("      Dice vs ground truth: matrix %.3f, pores %.3f, inclusions %.3f\n",
              dice["1"].get<double>(), dice["2"].get<double>(), dice["3"].get<double>());
  std::printf("wrote %s/{image,truth,scribbles,labels}.tif and summary.json\n", out.c_str());
  return identical ? 0 : 1;
}

}  // namespace
}  // namespace idlegrid

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines appear as they happen
  CLI::App app{"idlegrid foundation demo: sample -> signed slab units -> nodes -> stitched labels"};
  std::string out = "out/demo";
  app.add_option("--out", out, "output directory");
  CLI11_PARSE(app, argc, argv);
  return idlegrid::Run(out);
}
