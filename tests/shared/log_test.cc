#include "idlegrid/shared/log.h"

#include <cstdlib>
#include <regex>
#include <vector>

#include <catch2/catch.hpp>

namespace idlegrid {
namespace {

struct CaptureLogs {
  std::vector<std::pair<LogLevel, std::string>> lines;
  LogLevel saved = GetLogLevel();
  CaptureLogs() {
    SetLogSink([this](LogLevel level, const std::string& line) { lines.emplace_back(level, line); });
  }
  ~CaptureLogs() {
    SetLogSink(nullptr);
    SetLogLevel(saved);
  }
};

TEST_CASE("log lines carry time, level and source, filtered by level", "[log]") {
  CaptureLogs capture;
  SetLogLevel(LogLevel::kWarning);
  int evaluated = 0;
  IDLEGRID_LOG(kInfo) << "hidden " << ++evaluated;
  IDLEGRID_LOG(kWarning) << "shown " << 42;
  CHECK(evaluated == 0);  // filtered messages are not even formatted
  REQUIRE(capture.lines.size() == 1);
  CHECK(capture.lines[0].first == LogLevel::kWarning);
  CHECK(std::regex_match(capture.lines[0].second,
                         std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z W log_test\.cc:\d+\] shown 42)")));
}

TEST_CASE("the level comes from IDLEGRID_LOG", "[log]") {
  CaptureLogs capture;
  ::setenv("IDLEGRID_LOG", "debug", 1);
  InitLoggingFromEnv();
  CHECK(GetLogLevel() == LogLevel::kDebug);
  ::setenv("IDLEGRID_LOG", "loud", 1);
  InitLoggingFromEnv();
  CHECK(GetLogLevel() == LogLevel::kDebug);  // unchanged, and the problem is logged
  REQUIRE_FALSE(capture.lines.empty());
  CHECK(capture.lines.back().second.find("unknown log level 'loud'") != std::string::npos);
  ::unsetenv("IDLEGRID_LOG");
  CHECK(ParseLogLevel("off").value() == LogLevel::kOff);
  CHECK_FALSE(ParseLogLevel("").ok());
}

}  // namespace
}  // namespace idlegrid
