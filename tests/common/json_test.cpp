// parse_json and the typed accessors: damaged or hostile documents are InputErrors that name the
// document and the field, never crashes.
#include "common/json.h"

#include <gtest/gtest.h>

#include <string>

#include "common/error.h"

namespace cst {
namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(Json, ParsesAndReadsTypedFields) {
  const Json j = parse_json(R"({"step": 12, "name": "a\u00e9b", "nested": {"x": [1, 2]}})", "doc.json");
  EXPECT_EQ(json_int(j, "step", "doc.json"), 12);
  EXPECT_EQ(json_string(j, "name", "doc.json"),
            "a\xc3\xa9"
            "b");
  EXPECT_EQ(json_member(j, "nested", "doc.json")["x"].size(), 2u);
}

TEST(Json, DeepNestingIsAnInputErrorNotACrash) {
  const std::string deep(1000000, '[');
  const std::string msg = error_of([&] { parse_json(deep, "manifest.json"); });
  EXPECT_NE(msg.find("manifest.json: not valid JSON (nested deeper than 64 levels)"), std::string::npos) << msg;
  // At the limit it parses.
  EXPECT_NO_THROW(parse_json(std::string(64, '[') + std::string(64, ']'), "ok.json"));
  EXPECT_FALSE(error_of([] { parse_json(std::string(65, '[') + std::string(65, ']'), "x.json"); }).empty());
}

TEST(Json, SyntaxErrorsNameTheDocument) {
  for (const std::string bad : {R"({"a": "\uZZZZ"})", R"({"a": 1,})", "", R"({"a": "\ud800"})", "\xff"}) {
    const std::string msg = error_of([&] { parse_json(bad, "bad.json"); });
    EXPECT_EQ(msg.rfind("bad.json: not valid JSON (", 0), 0u) << "for input '" << bad << "': " << msg;
  }
}

TEST(Json, TypedAccessNamesFieldAndValue) {
  const Json j =
      parse_json(R"({"big": 123456789012345678901, "neg": -5, "s": 3, "u": 18446744073709551615})", "m.json");
  EXPECT_NE(error_of([&] { json_int(j, "missing", "m.json"); }).find("m.json: missing field 'missing'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { json_int(j, "big", "m.json"); }).find("field 'big'"), std::string::npos);
  EXPECT_NE(error_of([&] { json_int(j, "u", "m.json"); }).find("field 'u' = 18446744073709551615 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of([&] { json_int(j, "neg", "m.json", 0, 10); }).find("field 'neg' = -5 is outside [0, 10]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { json_string(j, "s", "m.json"); }).find("field 's' is number, expected a string"),
            std::string::npos);
  EXPECT_NE(error_of([&] { json_int(Json::array(), "k", "m.json"); }).find("expected a JSON object"),
            std::string::npos);
}

}  // namespace
}  // namespace cst
