// make_communicator: picks and builds a Communicator implementation by backend name. Kept apart
// from comm/communicator.h so that the interface does not include its implementations.
#pragma once

#include <memory>
#include <string>

#include "comm/backend.h"
#include "comm/communicator.h"

namespace cst::comm {

class MpiEnvironment;

// Makes a communicator. backend:
//   kLocal: LocalCommunicator (mpi may be null; if given, its size must be 1);
//   kMpi:   MpiCommunicator over MPI_COMM_WORLD (needs mpi);
//   kNccl:  NcclCommunicator on the current CUDA device (needs mpi and a build with NCCL);
//   kAuto:  nccl if built with NCCL and a CUDA device is present, else mpi when mpi is given
//           and its size > 1, else local (the one place kAuto is resolved).
// timeout_s bounds every blocking collective of the MPI and NCCL communicators (<= 0: none).
// mpi, when given, must outlive the communicator. Collective over MPI_COMM_WORLD for mpi/nccl.
// Throws cst::InputError for an unavailable backend.
std::unique_ptr<Communicator> make_communicator(MpiEnvironment* mpi, Backend backend, double timeout_s = 600.0);
// The same by name (backend_names(): auto, local, mpi, nccl); InputError naming an unknown one.
std::unique_ptr<Communicator> make_communicator(MpiEnvironment* mpi, const std::string& backend,
                                                double timeout_s = 600.0);

}  // namespace cst::comm
