#include "common/fields.h"

#include <cmath>
#include <sstream>

#include "common/error.h"

namespace cst {

void throw_unknown_field(const std::string& what, const std::string& key, const std::string* value) {
  if (value) CST_THROW_INPUT(what << " '" << key << "' (value '" << *value << "')");
  CST_THROW_INPUT(what << " '" << key << "'");
}

int64_t parse_int(const std::string& key, const std::string& text) {
  size_t pos = 0;
  int64_t v = 0;
  try {
    v = std::stoll(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  CST_INPUT_CHECK(pos == text.size() && !text.empty(), key << " = '" << text << "' is not an integer");
  return v;
}

double parse_float(const std::string& key, const std::string& text) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  CST_INPUT_CHECK(pos == text.size() && !text.empty() && std::isfinite(v),
                  key << " = '" << text << "' is not a finite number");
  return v;
}

bool parse_bool(const std::string& key, const std::string& text) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  CST_THROW_INPUT(key << " = '" << text << "' is not a boolean (true/false)");
}

std::string format_float(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

void throw_bad_enum(const std::string& key, const std::string& text, const std::string& allowed) {
  CST_THROW_INPUT(key << " = '" << text << "' is not one of {" << allowed << "}");
}

}  // namespace cst
