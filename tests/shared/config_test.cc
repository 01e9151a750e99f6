#include "idlegrid/shared/config.h"

#include <sys/stat.h>

#include <map>

#include <catch2/catch.hpp>

#include "idlegrid/shared/files.h"
#include "test_util.h"

namespace idlegrid {
namespace {

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST_CASE("paths follow HOME, then XDG, then explicit overrides", "[config]") {
  Paths home = ResolvePaths(FakeEnv({{"HOME", "/home/ada"}})).value();
  CHECK(home.config_dir == "/home/ada/.config/idlegrid");
  CHECK(home.data_dir == "/home/ada/.local/share/idlegrid");
  CHECK(home.cache_dir == "/home/ada/.cache/idlegrid");
  CHECK(home.config_file() == "/home/ada/.config/idlegrid/config.json");

  Paths xdg = ResolvePaths(FakeEnv({{"HOME", "/home/ada"},
                                    {"XDG_CONFIG_HOME", "/cfg"},
                                    {"XDG_DATA_HOME", "relative/ignored"}}))
                  .value();
  CHECK(xdg.config_dir == "/cfg/idlegrid");
  CHECK(xdg.data_dir == "/home/ada/.local/share/idlegrid");

  Paths over = ResolvePaths(FakeEnv({{"HOME", "/home/ada"},
                                     {"XDG_CONFIG_HOME", "/cfg"},
                                     {"IDLEGRID_CONFIG_DIR", "/etc/idlegrid"},
                                     {"IDLEGRID_DATA_DIR", "/srv/idlegrid"}}))
                   .value();
  CHECK(over.config_dir == "/etc/idlegrid");
  CHECK(over.data_dir == "/srv/idlegrid");

  StatusOr<Paths> none = ResolvePaths(FakeEnv({}));
  CHECK(none.status().code() == StatusCode::kFailedPrecondition);
}

TEST_CASE("config files load, save privately and reject junk", "[config]") {
  testing::TempDir dir;
  Paths p{dir / "cfg", dir / "data", dir / "cache"};
  REQUIRE(EnsureDirs(p).ok());
  struct stat st {};
  REQUIRE(::stat(p.config_dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);

  CHECK(LoadConfig(p.config_file()).value() == Json::object());  // absent: empty
  Json c = {{"server", "https://lab:8443"}, {"retries", 3}};
  REQUIRE(SaveConfig(p.config_file(), c).ok());
  REQUIRE(::stat(p.config_file().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  Json back = LoadConfig(p.config_file()).value();
  CHECK(back == c);
  CHECK(ConfigString(back, "server", "").value() == "https://lab:8443");
  CHECK(ConfigString(back, "absent", "dflt").value() == "dflt");
  CHECK(ConfigInt(back, "retries", 0).value() == 3);
  CHECK_FALSE(ConfigInt(back, "server", 0).ok());
  CHECK_FALSE(ConfigString(back, "retries", "").ok());

  testing::Spit(p.config_file(), "{\"server\": ");
  StatusOr<Json> bad = LoadConfig(p.config_file());
  CHECK(bad.status().code() == StatusCode::kInvalidArgument);
  CHECK(bad.status().message().find(p.config_file()) != std::string::npos);
  testing::Spit(p.config_file(), "[1,2]");
  CHECK_FALSE(LoadConfig(p.config_file()).ok());
}

TEST_CASE("atomic writes replace whole files and keep modes", "[config]") {
  testing::TempDir dir;
  std::string path = dir / "f";
  REQUIRE(WriteFileAtomic(path, "one", 0600).ok());
  REQUIRE(WriteFileAtomic(path, "two", 0600).ok());
  CHECK(ReadFile(path, 100).value() == "two");
  CHECK(ReadFile(path, 2).status().code() == StatusCode::kResourceExhausted);
  CHECK(ReadFile(dir / "none", 2).status().code() == StatusCode::kNotFound);
  CHECK(WriteFileAtomic(dir / "no/such/dir/f", "x").code() == StatusCode::kIoError);
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  CHECK(entries == 1);  // no temporary files left behind
}

}  // namespace
}  // namespace idlegrid
