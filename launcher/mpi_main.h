// main() of a tool that runs under mpirun or as one plain process (one rank): MPI set-up, and
// what a failing rank does so that no peer hangs.
#pragma once

#include <cstdio>
#include <functional>
#include <memory>

#include "comm/mpi.h"
#include "launcher/tool_main.h"

namespace cst {

// Initialises MPI (comm::MpiEnvironment, finalised on return) and returns body(mpi)'s exit
// code. On an exception: its message and exit code as report_exception gives them (2 for bad
// input); under mpirun (more than one rank) the failing rank then aborts the whole job with that
// code, since its peers may wait for it in a collective.
inline int mpi_tool_main(int& argc, char**& argv, const std::function<int(comm::MpiEnvironment&)>& body) {
  std::unique_ptr<comm::MpiEnvironment> mpi;
  int code = 0;
  try {
    mpi = std::make_unique<comm::MpiEnvironment>(argc, argv);
    return body(*mpi);
  } catch (...) {
    code = report_exception(std::current_exception());
  }
  if (mpi && mpi->size() > 1) {
    std::fprintf(stderr, "error: rank %d on %s aborts the job\n", mpi->rank(), mpi->host().c_str());
    mpi->abort(code);
  }
  return code;
}

}  // namespace cst
