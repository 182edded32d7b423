// The MPI environment of an MPI test executable (made by tests/comm/mpi_main.cpp's main()).
#pragma once

#include "comm/mpi.h"

namespace cst::comm::testing {
MpiEnvironment& mpi();
}
