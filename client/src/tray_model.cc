#include "idlegrid/client/tray_model.h"

#include <cstdio>

namespace idlegrid::client {

const char* TrayStateName(TrayState s) {
  switch (s) {
    case TrayState::kOffline: return "offline";
    case TrayState::kIdle: return "idle";
    case TrayState::kWorking: return "working";
    case TrayState::kPaused: return "paused";
    case TrayState::kError: return "error";
  }
  return "?";
}

namespace {
std::string Str(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}
long long Int(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_number_integer() ? j[key].get<long long>() : 0;
}
}  // namespace

TrayView ViewOf(const StatusOr<Json>& status) {
  TrayView v;
  v.pause_label = "Pause";
  if (!status.ok() || !status->is_object()) {
    v.state = TrayState::kOffline;
    v.headline = "The idlegrid node is not running";
    v.tooltip = "idlegrid: node not running";
    v.details.emplace_back("Reason", status.ok() ? "malformed reply" : status.status().message());
    return v;
  }
  const Json& s = *status;
  const std::string state = Str(s, "state");
  v.paused = s.value("paused", false);
  v.pause_label = v.paused ? "Resume" : "Pause";
  v.progress = s.contains("progress") && s["progress"].is_number() ? s["progress"].get<double>() : 0.0;
  const std::string unit = Str(s, "unit_id"), error = Str(s, "last_error");
  if (v.paused || state == "paused" || state == "suspended") {
    v.state = TrayState::kPaused;
    v.headline = v.paused ? "Paused" : "Suspended while you use this computer";
  } else if (state == "working" || state == "downloading" || state == "uploading") {
    v.state = TrayState::kWorking;
    char buf[256];
    std::snprintf(buf, sizeof(buf), "Computing %s: %.0f%%", Str(s, "kind").c_str(), 100 * v.progress);
    v.headline = buf;
  } else if (state == "stopped" || (!error.empty() && state != "idle" && state != "waiting")) {
    v.state = TrayState::kError;
    v.headline = error.empty() ? "Stopped" : "Problem: " + error;
  } else {
    v.state = TrayState::kIdle;
    v.headline = state == "waiting" ? "Waiting: " + Str(s, "message") : "Idle: no work right now";
  }
  v.tooltip = "idlegrid: " + v.headline;
  v.details.emplace_back("Server", Str(s, "server"));
  v.details.emplace_back("Node", Str(s, "node_id"));
  v.details.emplace_back("Unit", unit.empty() ? "-" : unit);
  v.details.emplace_back("Job", Str(s, "job_id").empty() ? "-" : Str(s, "job_id"));
  v.details.emplace_back("Epoch", unit.empty() ? "-" : std::to_string(Int(s, "epoch")));
  v.details.emplace_back("Units done", std::to_string(Int(s, "units_done")));
  v.details.emplace_back("Given back", std::to_string(Int(s, "units_given_back")));
  v.details.emplace_back("Failed / refused", std::to_string(Int(s, "units_failed")) + " / " + std::to_string(Int(s, "refused")));
  v.details.emplace_back("Last problem", error.empty() ? "-" : error);
  return v;
}

}  // namespace idlegrid::client
