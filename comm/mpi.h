// The process's MPI environment as one RAII object, made in main() and passed down.
//
//   int main(int argc, char** argv) {
//     cst::comm::MpiEnvironment mpi(argc, argv);   // MPI_Init_thread
//     ...                                           // MPI_Finalize when mpi goes out of scope
//   }
//
// Thread level: MPI_THREAD_MULTIPLE when the library provides it (and it is asked for), else
// MPI_THREAD_FUNNELED (only the thread that constructed the environment may call MPI).
// thread_level() says which.
// Exactly one MpiEnvironment may exist per process (MPI can be initialised once); a second one
// throws cst::Error.
#pragma once

#include <mpi.h>

#include <string>

#include "common/error.h"

namespace cst::comm {

class MpiEnvironment {
 public:
  // Calls MPI_Init_thread asking for `required` (MPI_THREAD_MULTIPLE or MPI_THREAD_FUNNELED; tests
  // ask for FUNNELED to run the path of an MPI library without MPI_THREAD_MULTIPLE). argc/argv
  // may be modified by MPI (it strips its own arguments).
  MpiEnvironment(int& argc, char**& argv, int required = MPI_THREAD_MULTIPLE);
  // Calls MPI_Finalize unless abort() was called. Never throws.
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  int rank() const { return rank_; }                  // in MPI_COMM_WORLD
  int size() const { return size_; }                  // of MPI_COMM_WORLD
  const std::string& host() const { return host_; }   // MPI_Get_processor_name
  int thread_level() const { return thread_level_; }  // MPI_THREAD_MULTIPLE or _FUNNELED
  // Collective over MPI_COMM_WORLD: every rank must call it.
  void barrier() const;
  // Terminates every rank of MPI_COMM_WORLD with exit code `code` (so that no peer hangs
  // after a failure on one rank). Does not return.
  [[noreturn]] void abort(int code) const;

 private:
  int rank_ = 0, size_ = 1, thread_level_ = 0;
  std::string host_;
};

namespace detail {
// Throws cst::Error "MPI error on rank R (host H): <MPI_Error_string> [expr at file:line]".
[[noreturn]] void throw_mpi_error(int code, const char* expr, const char* file, int line);
}  // namespace detail

}  // namespace cst::comm

// Checks the return code of an MPI call; throws cst::Error with rank, host, the failing
// expression, file:line and MPI's own message. MPI_COMM_WORLD's error handler is set to
// MPI_ERRORS_RETURN by MpiEnvironment so that errors reach this macro instead of aborting.
#define CST_CHECK_MPI(expr)                                                                                       \
  do {                                                                                                            \
    int cst_mpi_rc_ = (expr);                                                                                     \
    if (cst_mpi_rc_ != MPI_SUCCESS) ::cst::comm::detail::throw_mpi_error(cst_mpi_rc_, #expr, __FILE__, __LINE__); \
  } while (0)
