#include "comm/mpi.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace cst::comm {

namespace detail {
void throw_mpi_error(int code, const char* expr, const char* file, int line) {
  int rank = -1, initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  char msg[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS) std::snprintf(msg, sizeof(msg), "code %d", code);
  std::ostringstream os;
  os << "MPI error on rank " << rank << " (host " << host << ", pid " << getpid() << "): " << msg;
  ::cst::detail::throw_error(file, line, expr, os.str());
}
}  // namespace detail

MpiEnvironment::MpiEnvironment(int& argc, char**& argv, int required) {
  CST_CHECK(required == MPI_THREAD_MULTIPLE || required == MPI_THREAD_FUNNELED,
            "MpiEnvironment: thread level " << required << " (expected MPI_THREAD_MULTIPLE or MPI_THREAD_FUNNELED)");
  int initialized = 0;
  MPI_Initialized(&initialized);
  CST_CHECK(!initialized, "MPI is already initialised: only one MpiEnvironment per process");
  int provided = 0;
  CST_CHECK_MPI(MPI_Init_thread(&argc, &argv, required, &provided));
  if (provided < MPI_THREAD_MULTIPLE) {
    // Ask no more than we need: the library stays initialised at `provided`, which must be
    // at least FUNNELED for our use (one thread calls MPI, others compute).
    CST_CHECK(provided >= MPI_THREAD_FUNNELED, "MPI provides thread level " << provided << " < MPI_THREAD_FUNNELED");
  }
  thread_level_ =
      provided >= MPI_THREAD_MULTIPLE && required >= MPI_THREAD_MULTIPLE ? MPI_THREAD_MULTIPLE : MPI_THREAD_FUNNELED;
  CST_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  CST_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  CST_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  char name[MPI_MAX_PROCESSOR_NAME] = {0};
  int len = 0;
  CST_CHECK_MPI(MPI_Get_processor_name(name, &len));
  host_.assign(name, static_cast<size_t>(len));
}

MpiEnvironment::~MpiEnvironment() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void MpiEnvironment::barrier() const { CST_CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD)); }

void MpiEnvironment::abort(int code) const {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort should not return; make sure we do not either
}

}  // namespace cst::comm
