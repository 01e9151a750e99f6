#include "idlegrid/shared/json.h"

#include <catch2/catch.hpp>

namespace idlegrid {
namespace {

TEST_CASE("canonical JSON sorts keys and drops whitespace", "[json]") {
  StatusOr<Json> a = ParseJson(R"({ "b": [1, 2, {"z": 1, "a": 2}], "a": "x\u00e9" })");
  StatusOr<Json> b = ParseJson(R"({"a":"xé","b":[1,2,{"a":2,"z":1}]})");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  StatusOr<std::string> ca = CanonicalJson(*a);
  StatusOr<std::string> cb = CanonicalJson(*b);
  REQUIRE(ca.ok());
  CHECK(*ca == R"({"a":"xé","b":[1,2,{"a":2,"z":1}]})");
  CHECK(*ca == *cb);
}

TEST_CASE("canonical JSON refuses values with no encoding", "[json]") {
  Json nan = Json{{"x", std::nan("")}};
  CHECK(CanonicalJson(nan).status().code() == StatusCode::kInvalidArgument);
  Json inf = Json::array({1.0, HUGE_VAL});
  CHECK_FALSE(CanonicalJson(inf).ok());
  Json bad_utf8 = Json{{"s", std::string("\xff\xfe")}};
  CHECK_FALSE(CanonicalJson(bad_utf8).ok());
}

TEST_CASE("ParseJson rejects malformed, duplicate, deep and large input", "[json]") {
  CHECK(ParseJson("{\"a\":").status().code() == StatusCode::kInvalidArgument);
  CHECK(ParseJson("{\"a\":1,}").status().code() == StatusCode::kInvalidArgument);
  CHECK(ParseJson("\"\xff\"").status().code() == StatusCode::kInvalidArgument);

  StatusOr<Json> dup = ParseJson(R"({"a":1,"b":{"c":1,"c":2}})");
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.status().message().find("duplicate key \"c\"") != std::string::npos);
  // The same key in different objects is fine.
  CHECK(ParseJson(R"({"a":{"c":1},"b":{"c":2}})").ok());

  std::string deep(100, '[');
  deep += std::string(100, ']');
  StatusOr<Json> d = ParseJson(deep, JsonLimits{1 << 20, 32});
  REQUIRE_FALSE(d.ok());
  CHECK(d.status().message().find("nested deeper") != std::string::npos);
  CHECK(ParseJson("[[[[1]]]]", JsonLimits{1 << 20, 5}).ok());

  std::string big = "\"" + std::string(200, 'x') + "\"";
  CHECK(ParseJson(big, JsonLimits{100, 32}).status().code() == StatusCode::kResourceExhausted);
}

TEST_CASE("JsonReader reports the first problem with its field path", "[json]") {
  Json j = {{"name", "ok"}, {"count", 5}, {"ratio", 0.5}, {"flag", true}};
  {
    JsonReader r(j, "msg");
    CHECK(r.String("name", 10) == "ok");
    CHECK(r.Int("count", 0, 10) == 5);
    CHECK(r.Number("ratio", 0, 1) == 0.5);
    CHECK(r.Bool("flag"));
    CHECK(r.Finish().ok());
  }
  {
    JsonReader r(j, "msg");
    r.String("name", 10);
    Status st = r.Finish();  // count, ratio and flag never read
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find("unknown field") != std::string::npos);
  }
  {
    JsonReader r(j, "msg");
    r.Int("name", 0, 1);
    CHECK(r.Finish().message() == "msg.name: expected integer, got string");
  }
  {
    JsonReader r(j, "msg");
    r.Int("count", 0, 4);
    CHECK(r.Finish().message() == "msg.count: out of range [0, 4]");
  }
  {
    JsonReader r(j, "msg");
    r.String("name", 1);
    CHECK(r.Finish().message().find("exceeds the limit of 1") != std::string::npos);
  }
  {
    JsonReader r(j, "msg");
    r.String("missing", 5);
    CHECK(r.Finish().message() == "msg.missing: missing field");
  }
  {
    Json v = {{"v", 1.5}};
    JsonReader r(v, "m");
    r.Int("v", 0, 10);  // a float is not an integer
    CHECK(r.Finish().message() == "m.v: expected integer, got number");
  }
  {
    Json v = {{"v", 18446744073709551615ull}};
    JsonReader r(v, "m");
    r.Int("v", 0, INT64_MAX);
    CHECK(r.Finish().message().find("out of range") != std::string::npos);
  }
  {
    Json v = Json::array();
    JsonReader r(v, "m");
    CHECK(r.Finish().message() == "m: expected an object, got array");
  }
}

TEST_CASE("id, name and hex validators", "[json]") {
  CHECK(IsValidId("job-1_A"));
  CHECK_FALSE(IsValidId(""));
  CHECK_FALSE(IsValidId("a/b"));
  CHECK_FALSE(IsValidId(std::string(65, 'a')));
  CHECK(IsValidName("image.tif"));
  CHECK_FALSE(IsValidName(".."));
  CHECK_FALSE(IsValidName("Image"));
  CHECK_FALSE(IsValidName("a/../b"));
  CHECK(IsLowerHex("00ff", 4));
  CHECK_FALSE(IsLowerHex("00FF", 4));
  CHECK_FALSE(IsLowerHex("00f", 4));
}

}  // namespace
}  // namespace idlegrid
