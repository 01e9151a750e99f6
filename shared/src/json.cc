#include "idlegrid/shared/json.h"

#include <cmath>
#include <cstdint>
#include <vector>

namespace idlegrid {
namespace {

const char* TypeName(Json::value_t t) {
  switch (t) {
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "object";
    case Json::value_t::array: return "array";
    case Json::value_t::string: return "string";
    case Json::value_t::boolean: return "boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "integer";
    case Json::value_t::number_float: return "number";
    default: return "unsupported value";
  }
}

// Rejects values that have no canonical encoding.
Status CheckEncodable(const Json& v, int depth) {
  if (depth > 256) return InvalidArgumentError("JSON nested too deeply to encode");
  switch (v.type()) {
    case Json::value_t::number_float:
      if (!std::isfinite(v.get<double>())) {
        return InvalidArgumentError("NaN and Infinity have no JSON encoding");
      }
      return Status::Ok();
    case Json::value_t::object:
    case Json::value_t::array:
      for (const auto& item : v) IDLEGRID_RETURN_IF_ERROR(CheckEncodable(item, depth + 1));
      return Status::Ok();
    case Json::value_t::binary:
    case Json::value_t::discarded:
      return InvalidArgumentError("value has no JSON encoding");
    default:
      return Status::Ok();
  }
}

}  // namespace

StatusOr<Json> ParseJson(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return ResourceExhaustedError("JSON document of " + std::to_string(text.size()) +
                                  " bytes exceeds the limit of " +
                                  std::to_string(limits.max_bytes));
  }
  // The callback enforces the depth limit and rejects duplicate keys, which the library
  // would otherwise resolve silently (last one wins).
  std::string problem;
  std::vector<std::set<std::string>> keys;
  auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) -> bool {
    if (!problem.empty()) return false;
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        if (depth >= limits.max_depth) {
          problem = "nested deeper than " + std::to_string(limits.max_depth) + " levels";
          throw std::runtime_error(problem);
        }
        if (event == Json::parse_event_t::object_start) keys.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second) {
          problem = "duplicate key \"" + parsed.get<std::string>() + "\"";
          throw std::runtime_error(problem);
        }
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                       /*ignore_comments=*/false);
  } catch (const Json::exception& e) {
    return InvalidArgumentError(std::string("malformed JSON: ") + e.what());
  } catch (const std::runtime_error&) {
    return InvalidArgumentError("malformed JSON: " + problem);
  }
}

StatusOr<std::string> CanonicalJson(const Json& value) {
  IDLEGRID_RETURN_IF_ERROR(CheckEncodable(value, 0));
  try {
    // nlohmann::json keeps object keys in a std::map, i.e. sorted by bytes; dump(-1) adds
    // no whitespace; the strict handler refuses invalid UTF-8 instead of replacing it.
    return value.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::strict);
  } catch (const Json::exception& e) {
    return InvalidArgumentError(std::string("cannot encode JSON: ") + e.what());
  }
}

bool IsValidId(std::string_view s, size_t max_len) {
  if (s.empty() || s.size() > max_len) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool IsValidName(std::string_view s, size_t max_len) {
  if (s.empty() || s.size() > max_len || s == "." || s == "..") return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.';
    if (!ok) return false;
  }
  return true;
}

bool IsLowerHex(std::string_view s, size_t len) {
  if (s.size() != len) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

JsonReader::JsonReader(const Json& value, std::string where)
    : value_(value), where_(std::move(where)) {
  if (!value_.is_object()) {
    status_ = InvalidArgumentError(where_ + ": expected an object, got " +
                                   TypeName(value_.type()));
  }
}

std::string JsonReader::Path(const std::string& key) const {
  return where_.empty() ? key : where_ + "." + key;
}

void JsonReader::Fail(const std::string& key, const std::string& problem) {
  if (status_.ok()) status_ = InvalidArgumentError(Path(key) + ": " + problem);
}

bool JsonReader::Has(const std::string& key) const {
  return value_.is_object() && value_.contains(key);
}

const Json* JsonReader::Field(const std::string& key, Json::value_t want, const char* want_name) {
  if (!status_.ok()) return nullptr;
  read_.insert(key);
  auto it = value_.find(key);
  if (it == value_.end()) {
    Fail(key, "missing field");
    return nullptr;
  }
  Json::value_t t = it->type();
  bool match = t == want;
  if (want == Json::value_t::number_integer) {
    match = t == Json::value_t::number_integer || t == Json::value_t::number_unsigned;
  } else if (want == Json::value_t::number_float) {
    match = it->is_number();
  }
  if (!match) {
    Fail(key, std::string("expected ") + want_name + ", got " + TypeName(t));
    return nullptr;
  }
  return &*it;
}

std::string JsonReader::String(const std::string& key, size_t max_len, bool allow_empty) {
  const Json* f = Field(key, Json::value_t::string, "string");
  if (f == nullptr) return {};
  const std::string& s = f->get_ref<const std::string&>();
  if (s.size() > max_len) {
    Fail(key, "string of " + std::to_string(s.size()) + " bytes exceeds the limit of " +
                  std::to_string(max_len));
    return {};
  }
  if (s.empty() && !allow_empty) {
    Fail(key, "must not be empty");
    return {};
  }
  return s;
}

std::string JsonReader::Enum(const std::string& key, std::initializer_list<const char*> allowed) {
  std::string s = String(key, 64);
  if (!status_.ok()) return {};
  std::string choices;
  for (const char* a : allowed) {
    if (s == a) return s;
    choices += choices.empty() ? a : std::string(", ") + a;
  }
  Fail(key, "unknown value \"" + s + "\" (expected one of: " + choices + ")");
  return {};
}

std::string JsonReader::Id(const std::string& key, size_t max_len) {
  std::string s = String(key, max_len);
  if (status_.ok() && !IsValidId(s, max_len)) {
    Fail(key, "must be 1-" + std::to_string(max_len) + " characters of [A-Za-z0-9_-]");
    return {};
  }
  return s;
}

std::string JsonReader::Sha256Hex(const std::string& key) {
  std::string s = String(key, 64);
  if (status_.ok() && !IsLowerHex(s, 64)) {
    Fail(key, "must be a SHA-256 digest: 64 lowercase hex digits");
    return {};
  }
  return s;
}

int64_t JsonReader::Int(const std::string& key, int64_t min, int64_t max) {
  const Json* f = Field(key, Json::value_t::number_integer, "integer");
  if (f == nullptr) return min;
  int64_t v = 0;
  bool in_range = true;
  if (f->is_number_unsigned()) {
    uint64_t u = f->get<uint64_t>();
    in_range = u <= static_cast<uint64_t>(INT64_MAX);
    v = static_cast<int64_t>(u);
  } else {
    v = f->get<int64_t>();
  }
  if (!in_range || v < min || v > max) {
    Fail(key, "out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    return min;
  }
  return v;
}

double JsonReader::Number(const std::string& key, double min, double max) {
  const Json* f = Field(key, Json::value_t::number_float, "number");
  if (f == nullptr) return min;
  double v = f->get<double>();
  if (!(v >= min && v <= max)) {
    Fail(key, "out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    return min;
  }
  return v;
}

bool JsonReader::Bool(const std::string& key) {
  const Json* f = Field(key, Json::value_t::boolean, "boolean");
  return f != nullptr && f->get<bool>();
}

const Json& JsonReader::Object(const std::string& key) {
  static const Json kEmpty = Json::object();
  const Json* f = Field(key, Json::value_t::object, "object");
  return f ? *f : kEmpty;
}

const Json& JsonReader::Array(const std::string& key, size_t max_items) {
  static const Json kEmpty = Json::array();
  const Json* f = Field(key, Json::value_t::array, "array");
  if (f == nullptr) return kEmpty;
  if (f->size() > max_items) {
    Fail(key, "has " + std::to_string(f->size()) + " items, more than the limit of " +
                  std::to_string(max_items));
    return kEmpty;
  }
  return *f;
}

Status JsonReader::Finish() {
  if (!status_.ok()) return status_;
  for (auto it = value_.begin(); it != value_.end(); ++it) {
    if (read_.count(it.key()) == 0) {
      std::string shown = it.key().size() > 64 ? it.key().substr(0, 64) + "..." : it.key();
      return InvalidArgumentError(Path(shown) + ": unknown field");
    }
  }
  return Status::Ok();
}

}  // namespace idlegrid
