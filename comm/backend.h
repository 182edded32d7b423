// Backend: which Communicator implementation make_communicator (comm/factory.h) builds, with the
// names config files and command lines spell it by. Torch-free (TrainConfig holds one).
#pragma once

#include "common/fields.h"

namespace cst::comm {

enum class Backend {
  kAuto,   // nccl when built with NCCL and a CUDA device is visible, else mpi for > 1 rank, else local
  kLocal,  // LocalCommunicator: one rank
  kMpi,    // MpiCommunicator over MPI_COMM_WORLD
  kNccl,   // NcclCommunicator on the current CUDA device
};

// {"auto", "local", "mpi", "nccl"}: the accepted spellings, each printed as read.
inline const EnumTable<Backend>& backend_names() {
  static const EnumTable<Backend> kNames = {
      {"auto", Backend::kAuto}, {"local", Backend::kLocal}, {"mpi", Backend::kMpi}, {"nccl", Backend::kNccl}};
  return kNames;
}

inline const char* to_string(Backend b) { return enum_name(backend_names(), b); }

}  // namespace cst::comm
