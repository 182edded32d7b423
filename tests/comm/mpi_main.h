// The MPI environment of an MPI test executable (made by tests/comm/mpi_main.cpp's main()).
#pragma once

#include "comm/mpi.h"
#include "comm/mpi_communicator.h"

namespace cst::comm::testing {
MpiEnvironment& mpi();

// A communicator over every rank of the world, made on the first call (collective: every rank
// makes that call at the same point) and freed by main() before MPI finalises.
MpiCommunicator& world();
}  // namespace cst::comm::testing
