#include "common/error.h"

#include <cstring>

namespace cst::detail {
namespace {
std::string where(const char* file, int line, const char* expr) {
  const char* base = std::strrchr(file, '/');
  std::ostringstream os;
  os << " [" << expr << " at " << (base ? base + 1 : file) << ":" << line << "]";
  return os.str();
}
}  // namespace

void throw_error(const char* file, int line, const char* expr, const std::string& msg) {
  throw Error(msg + where(file, line, expr));
}

void throw_input_error(const char* file, int line, const char* expr, const std::string& msg) {
  throw InputError(msg + where(file, line, expr));
}
}  // namespace cst::detail
