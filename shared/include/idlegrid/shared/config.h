// Where idlegrid keeps its files, and the per-user configuration file.
//
// Directories follow the XDG base directory spec, each with an override:
//   config  $IDLEGRID_CONFIG_DIR  else $XDG_CONFIG_HOME/idlegrid  else ~/.config/idlegrid
//   data    $IDLEGRID_DATA_DIR    else $XDG_DATA_HOME/idlegrid    else ~/.local/share/idlegrid
//   cache   $IDLEGRID_CACHE_DIR   else $XDG_CACHE_HOME/idlegrid   else ~/.cache/idlegrid
// The config file is config_dir/config.json: a JSON object of settings, e.g.
//   {"server": "https://lab-server:8443", "fingerprint": "ab12...", "token": "..."}
// It may hold secrets, so it is written with mode 0600.
#ifndef IDLEGRID_SHARED_CONFIG_H_
#define IDLEGRID_SHARED_CONFIG_H_

#include <functional>
#include <optional>
#include <string>

#include "idlegrid/shared/json.h"
#include "idlegrid/shared/status.h"

namespace idlegrid {

struct Paths {
  std::string config_dir;
  std::string data_dir;
  std::string cache_dir;

  std::string config_file() const { return config_dir + "/config.json"; }
};

// Returns the value of an environment variable, or nullopt. Tests pass their own.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup ProcessEnv();

// Resolves the directories (does not create them). Fails if neither an override, an XDG
// variable nor HOME is set. Relative XDG values are ignored, as the spec requires.
StatusOr<Paths> ResolvePaths(const EnvLookup& env = ProcessEnv());

// Creates the directories with mode 0700.
Status EnsureDirs(const Paths& paths);

// The config file's object; an absent file is an empty object. Malformed JSON or a
// non-object is INVALID_ARGUMENT naming the file.
StatusOr<Json> LoadConfig(const std::string& path);
Status SaveConfig(const std::string& path, const Json& config);

// Typed lookup with a default; a present value of the wrong type is an error.
StatusOr<std::string> ConfigString(const Json& config, const std::string& key,
                                   const std::string& fallback);
StatusOr<int64_t> ConfigInt(const Json& config, const std::string& key, int64_t fallback);

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_CONFIG_H_
