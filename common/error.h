// Errors as exceptions. Every throw site records file:line and the failing expression; the
// catcher in main() adds rank and host (it knows them; library code does not need to).
//
//   CST_CHECK(cond, "message " << value)        -> cst::Error       (a bug or a runtime failure)
//   CST_INPUT_CHECK(cond, "file " << f << ...)   -> cst::InputError  (bad user input: exit code 2)
//
// Messages must name the offending file / key / index / value; the macros add the location.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace cst {

// A runtime failure or violated contract. what() = "<message> [<expr> at <file>:<line>]".
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Bad input from the user (config, data file, weights file). Tools exit with code 2.
class InputError : public Error {
 public:
  explicit InputError(const std::string& what) : Error(what) {}
};

namespace detail {
[[noreturn]] void throw_error(const char* file, int line, const char* expr, const std::string& msg);
[[noreturn]] void throw_input_error(const char* file, int line, const char* expr, const std::string& msg);
}  // namespace detail

}  // namespace cst

#define CST_CHECK(cond, msg)                                                \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::ostringstream cst_os_;                                           \
      cst_os_ << msg;                                                       \
      ::cst::detail::throw_error(__FILE__, __LINE__, #cond, cst_os_.str()); \
    }                                                                       \
  } while (0)

#define CST_INPUT_CHECK(cond, msg)                                                \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::ostringstream cst_os_;                                                 \
      cst_os_ << msg;                                                             \
      ::cst::detail::throw_input_error(__FILE__, __LINE__, #cond, cst_os_.str()); \
    }                                                                             \
  } while (0)

#define CST_THROW_INPUT(msg) CST_INPUT_CHECK(false, msg)
#define CST_THROW(msg) CST_CHECK(false, msg)
