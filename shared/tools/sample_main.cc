// idlegrid-sample: writes the bundled synthetic materials sample as TIFF stacks.
//   idlegrid-sample --out DIR [--seed N] [--shape ZxYxX] [--labelled-pixels N]
// Writes DIR/image.tif (uint16), DIR/truth.tif (uint8 phases 1-3) and DIR/scribbles.tif
// (uint8, 0 = unlabelled, painted on one slice only).
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "idlegrid/shared/files.h"
#include "idlegrid/shared/sample_volume.h"
#include "idlegrid/shared/tiff_io.h"

namespace {

bool ParseShape(const std::string& text, idlegrid::VolumeShape* shape) {
  long long z = 0, y = 0, x = 0;
  char tail = 0;
  if (std::sscanf(text.c_str(), "%lldx%lldx%lld%c", &z, &y, &x, &tail) != 3) return false;
  *shape = idlegrid::VolumeShape{z, y, x, 1};
  return z > 0 && y > 0 && x > 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write the synthetic three-phase materials sample as TIFF stacks"};
  std::string out_dir, shape_text = "48x160x160";
  idlegrid::SampleOptions options;
  app.add_option("--out", out_dir, "output directory")->required();
  app.add_option("--seed", options.seed, "random seed");
  app.add_option("--shape", shape_text, "ZxYxX");
  app.add_option("--labelled-pixels", options.labelled_pixels, "scribble budget");
  CLI11_PARSE(app, argc, argv);
  if (!ParseShape(shape_text, &options.shape)) {
    std::fprintf(stderr, "idlegrid-sample: --shape must look like 48x160x160\n");
    return 2;
  }
  idlegrid::Status st = idlegrid::MakeDirs(out_dir);
  idlegrid::StatusOr<idlegrid::MaterialsSample> sample =
      st.ok() ? idlegrid::GenerateMaterialsSample(options)
              : idlegrid::StatusOr<idlegrid::MaterialsSample>(st);
  if (sample.ok()) st = idlegrid::WriteTiff(out_dir + "/image.tif", sample->image);
  if (st.ok() && sample.ok()) st = idlegrid::WriteTiff(out_dir + "/truth.tif", sample->truth);
  if (st.ok() && sample.ok()) {
    st = idlegrid::WriteTiff(out_dir + "/scribbles.tif", sample->scribbles);
  }
  if (!sample.ok()) st = sample.status();
  if (!st.ok()) {
    std::fprintf(stderr, "idlegrid-sample: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s/{image,truth,scribbles}.tif: %s, scribbles on slice %lld\n",
              out_dir.c_str(), options.shape.ToString().c_str(),
              static_cast<long long>(sample->label_slice));
  return 0;
}
