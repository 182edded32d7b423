// How every tool's main() ends on an error: "<prefix>error: <what>" on stderr and an exit code
// that means something: 2 for bad input (cst::InputError, a bad command line), 1 otherwise.
#pragma once

#include <boost/program_options.hpp>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "common/error.h"

namespace cst {

inline int report_exception(const std::exception_ptr& e, const std::string& prefix = "") {
  int code = 1;
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(e);
  } catch (const boost::program_options::error& x) {
    code = 2, what = std::string(x.what()) + " (see --help)";
  } catch (const InputError& x) {
    code = 2, what = x.what();
  } catch (const std::exception& x) {
    what = x.what();
  } catch (...) {
  }
  std::fprintf(stderr, "%serror: %s\n", prefix.c_str(), what.c_str());
  std::fflush(stderr);
  return code;
}

// boost::program_options 1.74 loops forever (growing a string without bound) when it formats an
// error about an option whose name or value holds one of its own placeholders, e.g.
// `--x%canonical_option%` or `--batch %value%`. Such text is refused before boost sees it.
inline void reject_option_placeholders(const std::string& text, const std::string& where) {
  for (size_t a = text.find('%'); a != std::string::npos; a = text.find('%', a + 1)) {
    const size_t b = text.find('%', a + 1);
    if (b == std::string::npos) return;
    bool word = b > a + 1;
    for (size_t i = a + 1; i < b; ++i) word = word && ((text[i] >= 'a' && text[i] <= 'z') || text[i] == '_');
    CST_INPUT_CHECK(
        !word, where << ": '" << text.substr(a, b - a + 1) << "' is not allowed (a placeholder of the option parser)");
  }
}

// The same for every argument of a command line (args[0], the program, excluded).
inline void reject_option_placeholders(const std::vector<std::string>& args) {
  for (size_t i = 1; i < args.size(); ++i) reject_option_placeholders(args[i], "argument " + std::to_string(i));
}

inline void reject_option_placeholders(int argc, const char* const* argv) {
  reject_option_placeholders(std::vector<std::string>(argv, argv + argc));
}

// Parses the command line into desc's bound variables. Returns false after printing the help
// when --help was given (the tool then exits 0); throws boost::program_options::error on a bad
// command line (exit 2 through report_exception).
inline bool parse_command_line(int argc, char** argv, const boost::program_options::options_description& desc) {
  namespace po = boost::program_options;
  reject_option_placeholders(argc, argv);
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, desc), vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

}  // namespace cst
