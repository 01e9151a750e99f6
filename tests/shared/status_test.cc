#include "idlegrid/shared/status.h"

#include <catch2/catch.hpp>

namespace idlegrid {
namespace {

StatusOr<int> Half(int v) {
  if (v % 2 != 0) return InvalidArgumentError("odd: " + std::to_string(v));
  return v / 2;
}

StatusOr<int> Quarter(int v) {
  IDLEGRID_ASSIGN_OR_RETURN(int h, Half(v));
  IDLEGRID_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckPositive(int v) {
  if (v <= 0) return OutOfRangeError("not positive");
  return Status::Ok();
}

Status Both(int a, int b) {
  IDLEGRID_RETURN_IF_ERROR(CheckPositive(a));
  IDLEGRID_RETURN_IF_ERROR(CheckPositive(b));
  return Status::Ok();
}

TEST_CASE("Status carries code and message", "[status]") {
  Status ok;
  CHECK(ok.ok());
  CHECK(ok.ToString() == "OK");
  Status bad = DataLossError("hash mismatch");
  CHECK_FALSE(bad.ok());
  CHECK(bad.code() == StatusCode::kDataLoss);
  CHECK(bad.ToString() == "DATA_LOSS: hash mismatch");
  CHECK(bad.WithContext("blob x").message() == "blob x: hash mismatch");
  CHECK(ok.WithContext("ignored").ok());
}

TEST_CASE("StatusOr propagates the first error", "[status]") {
  CHECK(Quarter(8).value() == 2);
  StatusOr<int> r = Quarter(6);  // 6 -> 3 -> odd
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message() == "odd: 3");
  CHECK(Both(1, 2).ok());
  CHECK(Both(1, -2).code() == StatusCode::kOutOfRange);
}

TEST_CASE("StatusOr built from an OK status is an internal error", "[status]") {
  StatusOr<int> r{Status::Ok()};
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInternal);
}

TEST_CASE("ErrnoError names the system error", "[status]") {
  Status st = ErrnoError("open x", ENOENT);
  CHECK(st.code() == StatusCode::kIoError);
  CHECK(st.message() == "open x: No such file or directory");
}

}  // namespace
}  // namespace idlegrid
