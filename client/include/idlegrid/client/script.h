// Pieces shared by the wizard's two script drivers (display-free `idlegrid-wizard --script`
// and the wx wizard's `--gui --script`): a script is one JSON object per line, '#' starts a
// comment; see client/wizard/wizard_main.cc for the commands.
#ifndef IDLEGRID_CLIENT_SCRIPT_H_
#define IDLEGRID_CLIENT_SCRIPT_H_

#include <string>
#include <vector>

#include "idlegrid/client/annotation.h"
#include "idlegrid/shared/json.h"
#include "idlegrid/shared/status.h"

namespace idlegrid::client {

struct ScriptLine {
  int number = 0;     // 1-based line in the file
  std::string text;   // as written, for messages
  Json command;       // {"name": argument}
};
// INVALID_ARGUMENT naming file:line for a line that is not one {"command": argument} object.
StatusOr<std::vector<ScriptLine>> ReadScript(const std::string& path);

// [[x, y], ...] as stroke points (malformed points are skipped).
std::vector<Point> PathOf(const Json& j);
// Replays painted labels (uint8, the volume's Y x X) of slice z as strokes: each run of one
// label along a row is a stroke.
Status PaintLabels(Annotation& a, const Volume& labels, int64_t z);
// A simulated user's corrections on slice z: on a grid of `step` pixels, dabs where the
// prediction (1 x Y x X) agrees with `truth` are accepted, the others painted with the truth.
struct Corrections {
  int64_t accepted = 0, corrected = 0;
};
StatusOr<Corrections> SimulateCorrections(Annotation& a, const Volume& truth, const Volume& prediction, int64_t z,
                                          int64_t step);

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_SCRIPT_H_
