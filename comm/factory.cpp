#include "comm/factory.h"

#include "comm/mpi.h"
#include "comm/mpi_communicator.h"
#ifdef CST_WITH_NCCL
#include "comm/nccl_communicator.h"
#endif

namespace cst::comm {

std::unique_ptr<Communicator> make_communicator(MpiEnvironment* mpi, Backend backend, double timeout_s) {
  Backend b = backend;
  if (b == Backend::kAuto) {
#ifdef CST_WITH_NCCL
    if (mpi != nullptr && NcclCommunicator::cuda_available())
      b = Backend::kNccl;
    else
#endif
      b = (mpi != nullptr && mpi->size() > 1) ? Backend::kMpi : Backend::kLocal;
  }
  switch (b) {
    case Backend::kLocal:
      CST_INPUT_CHECK(mpi == nullptr || mpi->size() == 1,
                      "communicator backend 'local' runs one rank, but MPI has " << mpi->size() << " ranks");
      return std::make_unique<LocalCommunicator>();
    case Backend::kMpi: {
      CST_INPUT_CHECK(mpi != nullptr, "communicator backend 'mpi' needs an MpiEnvironment");
      MpiCommunicator::Options o;
      o.timeout_s = timeout_s;
      return std::make_unique<MpiCommunicator>(*mpi, o);
    }
    case Backend::kNccl:
#ifdef CST_WITH_NCCL
      CST_INPUT_CHECK(mpi != nullptr, "communicator backend 'nccl' needs an MpiEnvironment");
      CST_INPUT_CHECK(NcclCommunicator::cuda_available(),
                      "communicator backend 'nccl' needs a CUDA device; none is visible");
      return std::make_unique<NcclCommunicator>(*mpi, -1, timeout_s);
#else
      CST_THROW_INPUT("communicator backend 'nccl': this build has no NCCL (CST_WITH_NCCL is off)");
#endif
    case Backend::kAuto: break;
  }
  CST_THROW("make_communicator: backend " << static_cast<int>(b) << " not resolved");
}

std::unique_ptr<Communicator> make_communicator(MpiEnvironment* mpi, const std::string& backend, double timeout_s) {
  for (const auto& [name, b] : backend_names())
    if (backend == name) return make_communicator(mpi, b, timeout_s);
  CST_THROW_INPUT("unknown communicator backend '" << backend << "' (expected auto, local, mpi or nccl)");
}

}  // namespace cst::comm
