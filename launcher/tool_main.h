// How every tool's main() ends on an error: "<prefix>error: <what>" on stderr and an exit code
// that means something: 2 for bad input (cst::InputError, a bad command line), 1 otherwise.
#pragma once

#include <boost/program_options.hpp>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

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

// Parses the command line into desc's bound variables. Returns false after printing the help
// when --help was given (the tool then exits 0); throws boost::program_options::error on a bad
// command line (exit 2 through report_exception).
inline bool parse_command_line(int argc, char** argv, const boost::program_options::options_description& desc) {
  namespace po = boost::program_options;
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
