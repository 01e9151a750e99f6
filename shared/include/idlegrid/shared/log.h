// Levelled logging to stderr (or a sink set by tests): one line per message,
//   2026-11-23T03:20:00.123Z W blob_store.cc:88] message
// Thread-safe. The level comes from IDLEGRID_LOG (debug|info|warning|error|off) or SetLogLevel.
#ifndef IDLEGRID_SHARED_LOG_H_
#define IDLEGRID_SHARED_LOG_H_

#include <functional>
#include <sstream>
#include <string>

#include "idlegrid/shared/status.h"

namespace idlegrid {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kOff = 4 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
inline bool LogEnabled(LogLevel level) { return level >= GetLogLevel(); }
StatusOr<LogLevel> ParseLogLevel(const std::string& name);
// Reads IDLEGRID_LOG; an unknown value keeps the current level and says so.
void InitLoggingFromEnv();

// Replaces the output (a whole formatted line, no trailing newline); nullptr restores stderr.
using LogSink = std::function<void(LogLevel, const std::string& line)>;
void SetLogSink(LogSink sink);

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

}  // namespace idlegrid

#define IDLEGRID_LOG(level)                                          \
  if (!::idlegrid::LogEnabled(::idlegrid::LogLevel::level)) {        \
  } else                                                             \
    ::idlegrid::LogMessage(::idlegrid::LogLevel::level, __FILE__, __LINE__).stream()

#endif  // IDLEGRID_SHARED_LOG_H_
