// The small materials sample as the files a wizard session starts from, and the opening of a
// session script (open the volume, name three classes, paint the sample's scribbles).
#ifndef IDLEGRID_TESTS_CLIENT_WIZARD_FIXTURES_H_
#define IDLEGRID_TESTS_CLIENT_WIZARD_FIXTURES_H_

#include <string>

#include "idlegrid/shared/tiff_io.h"
#include "models/model_fixtures.h"
#include "test_util.h"

namespace idlegrid::testing {

// Writes volume.tif, scribbles.tif and truth.tif into dir; returns the painted slice.
inline std::string WriteSampleFiles(const TempDir& dir) {
  const MaterialsSample& sample = SmallSample();
  if (!WriteTiff(dir / "volume.tif", sample.image).ok() || !WriteTiff(dir / "scribbles.tif", sample.scribbles).ok() ||
      !WriteTiff(dir / "truth.tif", sample.truth).ok()) {
    return "";
  }
  return std::to_string(sample.label_slice);
}

inline std::string ScriptOpening(const TempDir& dir, const std::string& z) {
  return "{\"open\": \"" + dir / "volume.tif" + "\"}\n"
         "{\"class\": \"matrix\"}\n{\"class\": \"pore\"}\n{\"class\": \"inclusion\"}\n"
         "{\"paint_labels\": {\"file\": \"" + dir / "scribbles.tif" + "\", \"slice\": " + z + "}}\n";
}

}  // namespace idlegrid::testing

#endif  // IDLEGRID_TESTS_CLIENT_WIZARD_FIXTURES_H_
