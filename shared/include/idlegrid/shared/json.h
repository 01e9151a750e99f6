// JSON for the protocol: bounded parsing of untrusted text, the canonical encoding that
// signatures are computed over, and JsonReader for strict field-by-field validation.
#ifndef IDLEGRID_SHARED_JSON_H_
#define IDLEGRID_SHARED_JSON_H_

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "idlegrid/shared/status.h"

namespace idlegrid {

using Json = nlohmann::json;

struct JsonLimits {
  size_t max_bytes = 4 << 20;  // whole document
  int max_depth = 32;          // nesting of objects and arrays
};

// Parses untrusted text. Errors (INVALID_ARGUMENT or RESOURCE_EXHAUSTED) name the byte
// offset: syntax errors, invalid UTF-8, duplicate keys, too deep, too large.
StatusOr<Json> ParseJson(std::string_view text, const JsonLimits& limits = {});

// The canonical encoding: object keys sorted by bytes, no whitespace, UTF-8, integers
// without exponent. Two equal values always encode to the same bytes, so it is what
// signatures cover. Fails for NaN/Infinity and invalid UTF-8.
StatusOr<std::string> CanonicalJson(const Json& value);

// Reads the fields of one JSON object strictly. The first problem (missing field, wrong
// type, out-of-range number, oversize string) is kept, later reads return defaults, and
// Finish() adds "unknown field" for any key never read. Messages name the field path,
// e.g. "unit.slab.z_end: must be > z_begin".
class JsonReader {
 public:
  // `where` prefixes field names in errors; `value` must outlive the reader.
  JsonReader(const Json& value, std::string where);
  JsonReader(Json&&, std::string) = delete;  // would dangle: the reader keeps a reference

  bool Has(const std::string& key) const;
  std::string String(const std::string& key, size_t max_len, bool allow_empty = false);
  // A string from a fixed vocabulary, e.g. {"train", "infer"}.
  std::string Enum(const std::string& key, std::initializer_list<const char*> allowed);
  // A string of 1..max_len characters from [A-Za-z0-9_-] (ids) or [a-z0-9_.-] (names).
  std::string Id(const std::string& key, size_t max_len = 64);
  std::string Sha256Hex(const std::string& key);
  int64_t Int(const std::string& key, int64_t min, int64_t max);
  double Number(const std::string& key, double min, double max);
  bool Bool(const std::string& key);
  // The raw value of an object or array field (empty object on error).
  const Json& Object(const std::string& key);
  const Json& Array(const std::string& key, size_t max_items);

  // Records an error found by the caller (e.g. a cross-field check) unless one is kept.
  void Fail(const std::string& key, const std::string& problem);
  const std::string& where() const { return where_; }
  std::string Path(const std::string& key) const;

  // The first error so far (unknown fields are only found by Finish).
  const Status& status() const { return status_; }
  // OK, or the first error; includes unknown fields.
  Status Finish();

 private:
  const Json* Field(const std::string& key, Json::value_t want, const char* want_name);

  const Json& value_;
  std::string where_;
  std::set<std::string> read_;
  Status status_;
};

// Character classes for ids and names in the protocol.
bool IsValidId(std::string_view s, size_t max_len = 64);    // [A-Za-z0-9_-]{1,max}
bool IsValidName(std::string_view s, size_t max_len = 64);  // [a-z0-9_.-]{1,max}, not "."/".."
bool IsLowerHex(std::string_view s, size_t len);

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_JSON_H_
