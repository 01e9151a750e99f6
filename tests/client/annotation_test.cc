// The wizard's painting core: brush and eraser strokes, counts, undo/redo, accepting a
// prediction, classes.
#include <catch2/catch.hpp>

#include <cstring>

#include "idlegrid/client/annotation.h"

namespace idlegrid::client {
namespace {

int64_t Count(const Annotation& a, uint8_t v) {
  int64_t n = 0;
  const uint8_t* p = a.labels().data<uint8_t>();
  for (int64_t i = 0; i < a.labels().shape().elements(); ++i) n += p[i] == v;
  return n;
}

TEST_CASE("a dab paints a disc of the brush radius", "[client][annotation]") {
  Annotation a({3, 40, 50, 1});
  const uint8_t c = a.AddClass("pore").value();
  CHECK(a.labelled() == 0);
  Patch p = a.Stroke(1, {{20, 10}}, 3, c).value();
  CHECK(Count(a, c) == 29);  // lattice points with dx^2 + dy^2 <= 9
  CHECK(a.counts()[c] == 29);
  CHECK(a.labelled() == 29);
  CHECK(p.z == 1);
  CHECK(a.labels().at<uint8_t>(1, 10, 20) == c);
  CHECK(a.labels().at<uint8_t>(1, 10, 24) == 0);
  CHECK(a.labels().at<uint8_t>(0, 10, 20) == 0);  // other slices untouched
}

TEST_CASE("strokes follow the path, clip at the borders and erase", "[client][annotation]") {
  Annotation a({1, 30, 30, 1});
  const uint8_t c1 = a.AddClass("matrix").value();
  const uint8_t c2 = a.AddClass("inclusion").value();
  a.Stroke(0, {{-5, 15}, {35, 15}}, 1, c1).value();  // across the whole width, beyond it
  for (int x = 0; x < 30; ++x) CHECK(a.labels().at<uint8_t>(0, 15, x) == c1);
  CHECK(a.labels().at<uint8_t>(0, 13, 10) == 0);
  CHECK(a.counts()[c1] == 3 * 30);
  a.Stroke(0, {{10, 15}}, 1.5, c2).value();  // paints over
  CHECK(a.labels().at<uint8_t>(0, 15, 10) == c2);
  CHECK(a.counts()[c1] + a.counts()[c2] == a.labelled());
  a.Stroke(0, {{0, 15}, {29, 15}}, 2, 0).value();  // the eraser
  CHECK(a.labelled() == 0);
  // Entirely outside, or over what is already there: no change, nothing to undo.
  CHECK(a.Stroke(0, {{-50, -50}}, 3, c1).value().empty());
  a.Undo();
  CHECK(a.labelled() > 0);  // the eraser stroke was the last real one
  CHECK(a.Stroke(0, {{5, 5}}, 3, 7).status().code() == StatusCode::kInvalidArgument);  // no class 7
  CHECK(a.Stroke(0, {{5, 5}}, 0, c1).status().code() == StatusCode::kInvalidArgument);
  CHECK(a.Stroke(9, {{5, 5}}, 2, c1).status().code() == StatusCode::kOutOfRange);
  CHECK(a.Stroke(0, {}, 2, c1).status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("undo and redo restore exact labels and counts", "[client][annotation]") {
  Annotation a({2, 64, 64, 1});
  const uint8_t c1 = a.AddClass("a").value();
  const uint8_t c2 = a.AddClass("b").value();
  std::vector<std::vector<uint8_t>> states;
  std::vector<std::vector<int64_t>> counts;
  auto snapshot = [&] {
    states.emplace_back(a.labels().bytes(), a.labels().bytes() + a.labels().size_bytes());
    counts.push_back(a.counts());
  };
  snapshot();
  a.Stroke(0, {{10, 10}, {50, 40}}, 4, c1).value();
  snapshot();
  a.Stroke(0, {{30, 5}, {30, 60}}, 3, c2).value();
  snapshot();
  a.Stroke(0, {{20, 20}, {40, 30}}, 5, 0).value();
  snapshot();
  for (int i = 3; i > 0; --i) {
    REQUIRE(a.Undo());
    CHECK(std::memcmp(a.labels().bytes(), states[i - 1].data(), states[i - 1].size()) == 0);
    CHECK(a.counts() == counts[i - 1]);
  }
  CHECK_FALSE(a.Undo());
  for (int i = 1; i <= 3; ++i) {
    REQUIRE(a.Redo());
    CHECK(std::memcmp(a.labels().bytes(), states[i].data(), states[i].size()) == 0);
  }
  CHECK_FALSE(a.Redo());
  a.Undo();
  a.Stroke(1, {{5, 5}}, 2, c1).value();  // a new stroke drops what could be redone
  CHECK_FALSE(a.CanRedo());
}

TEST_CASE("accepting a prediction copies it under the brush only", "[client][annotation]") {
  Annotation a({1, 20, 20, 1});
  a.AddClass("a").value();
  a.AddClass("b").value();
  std::vector<uint8_t> prediction(400);
  for (int i = 0; i < 400; ++i) prediction[i] = (i % 20) < 10 ? 1 : 2;
  a.Accept(0, {{5, 5}, {15, 5}}, 2, prediction.data()).value();
  CHECK(a.labels().at<uint8_t>(0, 5, 5) == 1);
  CHECK(a.labels().at<uint8_t>(0, 5, 15) == 2);
  CHECK(a.labels().at<uint8_t>(0, 15, 5) == 0);
  CHECK(a.counts()[1] > 0);
  CHECK(a.counts()[2] > 0);
  CHECK(a.Undo());
  CHECK(a.labelled() == 0);
}

TEST_CASE("labels read back bring their classes, and classes round-trip through JSON", "[client][annotation]") {
  Volume v = Volume::Create({2, 8, 8, 1}, DType::kUInt8).value();
  v.at<uint8_t>(1, 2, 3) = 3;
  v.at<uint8_t>(0, 0, 0) = 1;
  Annotation a = Annotation::FromLabels(std::move(v), {{"matrix", 0x112233}}).value();
  REQUIRE(a.classes().size() == 3);
  CHECK(a.classes()[0].name == "matrix");
  CHECK(a.classes()[2].name == "class 3");
  CHECK(a.counts()[3] == 1);
  CHECK(a.labelled() == 2);
  const auto back = Annotation::ClassesFromJson(a.ClassesToJson()).value();
  REQUIRE(back.size() == 3);
  CHECK(back[0].rgb == 0x112233);
  CHECK(back[2].rgb == Annotation::DefaultColour(3));
  CHECK_FALSE(Annotation::ClassesFromJson(Json::array({{{"name", "x"}, {"colour", "red"}}})).ok());
  CHECK_FALSE(Annotation::FromLabels(Volume::Create({1, 2, 2, 1}, DType::kUInt16).value()).ok());
  CHECK(a.RenameClass(2, "pore").ok());
  CHECK(a.RenameClass(9, "x").code() == StatusCode::kNotFound);
}

}  // namespace
}  // namespace idlegrid::client

