// Status and StatusOr<T>: the value every expected failure is reported with (I/O, network,
// parsing, bad signature, bad hash). Programmer mistakes use IDLEGRID_CHECK instead.
//
// Thread-safety: plain values; const methods are safe to call concurrently.
#ifndef IDLEGRID_SHARED_STATUS_H_
#define IDLEGRID_SHARED_STATUS_H_

#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace idlegrid {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // malformed input: bad JSON, wrong type, out-of-range value
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,    // authenticated but not allowed; forged or wrong-key signature
  kUnauthenticated,
  kFailedPrecondition,  // e.g. an expired or replayed unit
  kOutOfRange,
  kResourceExhausted,   // size limits
  kDataLoss,            // hash mismatch, truncated or corrupt file
  kDeadlineExceeded,    // timeouts
  kUnavailable,         // transient: network down, 5xx; worth retrying
  kCancelled,
  kIoError,
  kUnimplemented,       // valid input we do not support (e.g. a TIFF sample format)
  kInternal,
};

// Name of a code, e.g. "INVALID_ARGUMENT".
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "INVALID_ARGUMENT: field 'kind': unknown value 'x'" or "OK".
  std::string ToString() const;

  // Returns a copy whose message is "context: message"; OK stays OK.
  Status WithContext(const std::string& context) const;

  // Explicitly discards a status the caller has decided it does not need.
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline bool operator==(const Status& a, const Status& b) {
  return a.code() == b.code() && a.message() == b.message();
}

Status InvalidArgumentError(std::string message);
Status NotFoundError(std::string message);
Status AlreadyExistsError(std::string message);
Status PermissionDeniedError(std::string message);
Status UnauthenticatedError(std::string message);
Status FailedPreconditionError(std::string message);
Status OutOfRangeError(std::string message);
Status ResourceExhaustedError(std::string message);
Status DataLossError(std::string message);
Status DeadlineExceededError(std::string message);
Status UnavailableError(std::string message);
Status CancelledError(std::string message);
Status IoError(std::string message);
Status UnimplementedError(std::string message);
Status InternalError(std::string message);
// An IoError whose message ends with strerror(errnum).
Status ErrnoError(const std::string& context, int errnum);

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const T& value) : v_(value) {}             // NOLINT: implicit by design
  StatusOr(T&& value) : v_(std::move(value)) {}        // NOLINT
  StatusOr(Status status) : v_(std::move(status)) {    // NOLINT
    if (std::get<Status>(v_).ok()) v_ = Status(StatusCode::kInternal, "StatusOr built from OK");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  // OK when a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  // Accessing the value of a non-OK StatusOr is a programmer error and aborts.
  const T& value() const& { CheckOk(); return std::get<T>(v_); }
  T& value() & { CheckOk(); return std::get<T>(v_); }
  // By value, so that `for (auto& x : F().value())` does not dangle.
  T value() && { CheckOk(); return std::get<T>(std::move(v_)); }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  T operator*() && { return std::move(*this).value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

 private:
  void CheckOk() const {
    if (!ok()) std::abort();
  }
  std::variant<T, Status> v_;
};

}  // namespace idlegrid

#define IDLEGRID_CONCAT_INNER_(a, b) a##b
#define IDLEGRID_CONCAT_(a, b) IDLEGRID_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define IDLEGRID_RETURN_IF_ERROR(expr)                 \
  do {                                                 \
    ::idlegrid::Status _idlegrid_st = (expr);          \
    if (!_idlegrid_st.ok()) return _idlegrid_st;       \
  } while (0)

// `lhs = value of rexpr` (a StatusOr), or returns its error from the enclosing function.
#define IDLEGRID_ASSIGN_OR_RETURN(lhs, rexpr) \
  IDLEGRID_ASSIGN_OR_RETURN_IMPL_(IDLEGRID_CONCAT_(_idlegrid_so_, __LINE__), lhs, rexpr)
#define IDLEGRID_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                    \
  if (!tmp.ok()) return tmp.status();                    \
  lhs = std::move(tmp).value()

// Aborts with a message on a programmer error (never for bad input).
#define IDLEGRID_CHECK(cond)                                                        \
  do {                                                                              \
    if (!(cond)) ::idlegrid::internal::CheckFailed(__FILE__, __LINE__, #cond);      \
  } while (0)

namespace idlegrid::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* cond);
}  // namespace idlegrid::internal

#endif  // IDLEGRID_SHARED_STATUS_H_
