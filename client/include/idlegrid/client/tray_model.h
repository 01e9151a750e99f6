// What the tray app shows, computed from the node daemon's status (display-free, tested
// without a display): the icon state, the tooltip, the menu labels and the status window's
// lines.
#ifndef IDLEGRID_CLIENT_TRAY_MODEL_H_
#define IDLEGRID_CLIENT_TRAY_MODEL_H_

#include <string>
#include <utility>
#include <vector>

#include "idlegrid/shared/json.h"
#include "idlegrid/shared/status.h"

namespace idlegrid::client {

enum class TrayState { kOffline, kIdle, kWorking, kPaused, kError };
const char* TrayStateName(TrayState s);

struct TrayView {
  TrayState state = TrayState::kOffline;
  std::string tooltip;       // one line
  std::string headline;      // the status window's first line
  double progress = 0;       // 0..1 of the current unit
  bool paused = false;
  std::string pause_label;   // "Pause" or "Resume"
  std::vector<std::pair<std::string, std::string>> details;  // label, value
};

// `status`: the reply to "status" on the node's socket, or the error of asking.
TrayView ViewOf(const StatusOr<Json>& status);

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_TRAY_MODEL_H_
