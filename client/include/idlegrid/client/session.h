// A wizard session on disk, so that a user can close the app while the grid trains overnight
// and come back: DIR/session.json (image, grid, classes, jobs, chosen model, where the user
// was) and DIR/labels.tif (the painted labels, Deflate-compressed, written atomically;
// autosaved; absent while nothing is painted).
#ifndef IDLEGRID_CLIENT_SESSION_H_
#define IDLEGRID_CLIENT_SESSION_H_

#include <string>
#include <vector>

#include "idlegrid/client/annotation.h"
#include "idlegrid/shared/json.h"
#include "idlegrid/shared/status.h"

namespace idlegrid::client {

struct SessionJob {
  std::string job_id;
  std::string purpose;  // "candidates", "retrain", "apply", "denoise"
};

struct Session {
  std::string image_path;
  bool local_grid = true;         // "this computer only"
  std::string server, fingerprint;  // a lab grid (the token lives in config.json, not here)
  std::vector<SessionJob> jobs;
  std::string chosen_model;       // sha256 of the chosen model package, once picked
  double painting_seconds = 0;    // time spent painting, for the ~5 minute advice
  int64_t slice = 0;              // where the user was

  Json ToJson() const;
  static StatusOr<Session> FromJson(const Json& j);
};

// `labels`: false when only the session changed (labels.tif is written anyway if missing).
Status SaveSession(const std::string& dir, const Session& session, const Annotation& annotation, bool labels = true);
struct LoadedSession {
  Session session;
  Annotation annotation;
};
// NOT_FOUND when dir holds no session; DATA_LOSS when its files are damaged.
StatusOr<LoadedSession> LoadSession(const std::string& dir);

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_SESSION_H_
