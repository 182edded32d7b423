// Text <-> value conversions for typed config structs (ModelConfig, TrainConfig): each throws
// cst::InputError naming the key and the offending text. No clamping, no partial parses.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace cst {

int64_t parse_int(const std::string& key, const std::string& text);
double parse_float(const std::string& key, const std::string& text);  // finite only
bool parse_bool(const std::string& key, const std::string& text);     // true/false/1/0/yes/no/on/off
std::string format_float(double v);                                   // round-trips exactly

// Enum <-> name tables: {{"name", value}, ...}.
template <class E>
using EnumTable = std::vector<std::pair<const char*, E>>;

template <class E>
const char* enum_name(const EnumTable<E>& t, E v) {
  for (auto& [n, e] : t)
    if (e == v) return n;
  return "?";
}

[[noreturn]] void throw_bad_enum(const std::string& key, const std::string& text, const std::string& allowed);

template <class E>
E enum_parse(const EnumTable<E>& t, const std::string& key, const std::string& text) {
  std::string allowed;
  for (auto& [n, e] : t) {
    if (text == n) return e;
    allowed += std::string(allowed.empty() ? "" : ", ") + n;
  }
  throw_bad_enum(key, text, allowed);
}

// One option of a config struct C: declared once, used for config files, the command line,
// printing, hashing and file attributes.
template <class C>
struct Field {
  std::string name;  // key, e.g. "d_model" or "optim.lr"
  std::string kind;  // "int", "float", "bool" or "string" (enums are strings)
  std::string help;
  std::function<std::string(const C&)> get;
  std::function<void(C&, const std::string&)> set;  // throws InputError on bad text
};

// Throws InputError "<what> '<key>'" (plus " (value '<value>')" when value is given).
[[noreturn]] void throw_unknown_field(const std::string& what, const std::string& key, const std::string* value);

// The field of `fields` named key; throws as throw_unknown_field when there is none.
template <class C>
const Field<C>& find_field(const std::vector<Field<C>>& fields, const std::string& what, const std::string& key,
                           const std::string* value = nullptr) {
  for (const auto& f : fields)
    if (f.name == key) return f;
  throw_unknown_field(what, key, value);
}

}  // namespace cst

// Field<C> initialisers for a member of C named by KEY.
#define CST_FIELD_INT(C, KEY, MEMBER, HELP)                                     \
  ::cst::Field<C> {                                                             \
    KEY, "int", HELP, [](const C& c) { return std::to_string(c.MEMBER); },      \
        [](C& c, const std::string& s) { c.MEMBER = ::cst::parse_int(KEY, s); } \
  }
#define CST_FIELD_FLOAT(C, KEY, MEMBER, HELP)                                     \
  ::cst::Field<C> {                                                               \
    KEY, "float", HELP, [](const C& c) { return ::cst::format_float(c.MEMBER); }, \
        [](C& c, const std::string& s) { c.MEMBER = ::cst::parse_float(KEY, s); } \
  }
#define CST_FIELD_BOOL(C, KEY, MEMBER, HELP)                                                \
  ::cst::Field<C> {                                                                         \
    KEY, "bool", HELP, [](const C& c) { return std::string(c.MEMBER ? "true" : "false"); }, \
        [](C& c, const std::string& s) { c.MEMBER = ::cst::parse_bool(KEY, s); }            \
  }
#define CST_FIELD_STRING(C, KEY, MEMBER, HELP)                             \
  ::cst::Field<C> {                                                        \
    KEY, "string", HELP, [](const C& c) { return std::string(c.MEMBER); }, \
        [](C& c, const std::string& s) { c.MEMBER = s; }                   \
  }
#define CST_FIELD_ENUM(C, KEY, MEMBER, TABLE, HELP)                                                 \
  ::cst::Field<C> {                                                                                 \
    KEY, "string", HELP, [](const C& c) { return std::string(::cst::enum_name(TABLE, c.MEMBER)); }, \
        [](C& c, const std::string& s) { c.MEMBER = ::cst::enum_parse(TABLE, KEY, s); }             \
  }
