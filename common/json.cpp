#include "common/json.h"

#include "common/error.h"

namespace cst {

Json parse_json(const std::string& text, const std::string& where, int max_depth) {
  // The callback runs as each container starts, before it is built (depth = containers already
  // open), so at most max_depth containers are ever open. nlohmann's parser itself is iterative.
  const Json::parser_callback_t limit = [&](int depth, Json::parse_event_t event, Json&) {
    if (depth >= max_depth && (event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start))
      throw InputError(where + ": not valid JSON (nested deeper than " + std::to_string(max_depth) + " levels)");
    return true;
  };
  try {
    return Json::parse(text, limit);
  } catch (const Json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 3: ..."
    throw InputError(where + ": not valid JSON (" + e.what() + ")");
  }
}

const Json& json_member(const Json& obj, const std::string& key, const std::string& where) {
  CST_INPUT_CHECK(obj.is_object(),
                  where << ": expected a JSON object holding field '" << key << "', got " << obj.type_name());
  auto it = obj.find(key);
  CST_INPUT_CHECK(it != obj.end(), where << ": missing field '" << key << "'");
  return *it;
}

int64_t json_int(const Json& obj, const std::string& key, const std::string& where, int64_t lo, int64_t hi) {
  const Json& v = json_member(obj, key, where);
  CST_INPUT_CHECK(v.is_number_integer(), where << ": field '" << key
                                               << "' = " << v.dump(-1, ' ', true, Json::error_handler_t::replace)
                                               << " is not an integer");
  CST_INPUT_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX),
                  where << ": field '" << key << "' = " << v.get<uint64_t>() << " is out of range");
  const int64_t x = v.get<int64_t>();
  CST_INPUT_CHECK(x >= lo && x <= hi,
                  where << ": field '" << key << "' = " << x << " is outside [" << lo << ", " << hi << "]");
  return x;
}

std::string json_string(const Json& obj, const std::string& key, const std::string& where) {
  const Json& v = json_member(obj, key, where);
  CST_INPUT_CHECK(v.is_string(), where << ": field '" << key << "' is " << v.type_name() << ", expected a string");
  return v.get<std::string>();
}

}  // namespace cst
