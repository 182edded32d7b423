// JSON through nlohmann-json (Debian: nlohmann-json3-dev), the one JSON library of the project.
//
// parse_json is the only way in: it bounds the nesting depth before any value is built, so a
// hostile or damaged document (say, a million '[') is an InputError, never a stack overflow, and
// every syntax error names `where` and the line and column. Writers use nlohmann::json::dump().
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace cst {

using Json = nlohmann::json;

inline constexpr int kJsonMaxDepth = 64;

// Parses text as one JSON document. Throws cst::InputError "<where>: not valid JSON (<why>)", the
// why naming line and column, on a syntax error, invalid UTF-8 or more than max_depth nested
// arrays/objects.
Json parse_json(const std::string& text, const std::string& where, int max_depth = kJsonMaxDepth);

// Typed access to a member of a JSON object, for readers of our own files. Each throws
// cst::InputError "<where>: field '<key>' ..." naming the field when it is missing or has the
// wrong type, and json_int when the value is not an integer in [lo, hi].
const Json& json_member(const Json& obj, const std::string& key, const std::string& where);
int64_t json_int(const Json& obj, const std::string& key, const std::string& where, int64_t lo = INT64_MIN,
                 int64_t hi = INT64_MAX);
std::string json_string(const Json& obj, const std::string& key, const std::string& where);

}  // namespace cst
