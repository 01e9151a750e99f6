#include "idlegrid/shared/config.h"

#include <cstdlib>

#include "idlegrid/shared/files.h"

namespace idlegrid {
namespace {

// One directory: explicit override, else absolute $XDG_xxx/idlegrid, else $HOME/<fallback>.
StatusOr<std::string> Resolve(const EnvLookup& env, const char* override_var,
                              const char* xdg_var, const char* home_suffix) {
  std::optional<std::string> v = env(override_var);
  if (v && !v->empty()) return *v;
  v = env(xdg_var);
  if (v && !v->empty() && (*v)[0] == '/') return *v + "/idlegrid";
  v = env("HOME");
  if (v && !v->empty()) return *v + "/" + home_suffix + "/idlegrid";
  return FailedPreconditionError(std::string("cannot find a home for idlegrid files: set ") +
                                 override_var + ", " + xdg_var + " or HOME");
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

StatusOr<Paths> ResolvePaths(const EnvLookup& env) {
  Paths p;
  IDLEGRID_ASSIGN_OR_RETURN(p.config_dir,
                            Resolve(env, "IDLEGRID_CONFIG_DIR", "XDG_CONFIG_HOME", ".config"));
  IDLEGRID_ASSIGN_OR_RETURN(p.data_dir,
                            Resolve(env, "IDLEGRID_DATA_DIR", "XDG_DATA_HOME", ".local/share"));
  IDLEGRID_ASSIGN_OR_RETURN(p.cache_dir,
                            Resolve(env, "IDLEGRID_CACHE_DIR", "XDG_CACHE_HOME", ".cache"));
  return p;
}

Status EnsureDirs(const Paths& paths) {
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(paths.config_dir, 0700));
  IDLEGRID_RETURN_IF_ERROR(MakeDirs(paths.data_dir, 0700));
  return MakeDirs(paths.cache_dir, 0700);
}

StatusOr<Json> LoadConfig(const std::string& path) {
  StatusOr<std::string> text = ReadFile(path, 1 << 20);
  if (text.status().code() == StatusCode::kNotFound) return Json::object();
  if (!text.ok()) return text.status();
  StatusOr<Json> j = ParseJson(*text);
  if (!j.ok()) return j.status().WithContext(path);
  if (!j->is_object()) return InvalidArgumentError(path + ": expected a JSON object");
  return j;
}

Status SaveConfig(const std::string& path, const Json& config) {
  if (!config.is_object()) return InvalidArgumentError("config must be a JSON object");
  return WriteFileAtomic(path, config.dump(2) + "\n", 0600);
}

StatusOr<std::string> ConfigString(const Json& config, const std::string& key,
                                   const std::string& fallback) {
  auto it = config.find(key);
  if (it == config.end()) return fallback;
  if (!it->is_string()) return InvalidArgumentError("config \"" + key + "\" must be a string");
  return it->get<std::string>();
}

StatusOr<int64_t> ConfigInt(const Json& config, const std::string& key, int64_t fallback) {
  auto it = config.find(key);
  if (it == config.end()) return fallback;
  if (!it->is_number_integer()) {
    return InvalidArgumentError("config \"" + key + "\" must be an integer");
  }
  return it->get<int64_t>();
}

}  // namespace idlegrid
