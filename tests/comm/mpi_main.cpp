// main() of the MPI test executables: initialises MPI, runs the tests on every rank, prints
// full output on rank 0 and only failures elsewhere, and exits with the same code on every rank
// (non-zero if any rank failed).
#include "tests/comm/mpi_main.h"

#include <gtest/gtest.h>

#include <iostream>
#include <memory>

namespace cst::comm::testing {
namespace {
MpiEnvironment* g_env = nullptr;
std::unique_ptr<MpiCommunicator> g_world;

// Failures on ranks other than 0, prefixed with the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::cerr << "[rank " << rank_ << "] FAILURE " << (r.file_name() ? r.file_name() : "?") << ":" << r.line_number()
                << "\n"
                << r.summary() << std::endl;
  }

 private:
  int rank_;
};
}  // namespace

MpiEnvironment& mpi() { return *g_env; }

MpiCommunicator& world() {
  if (!g_world) g_world = std::make_unique<MpiCommunicator>(*g_env);
  return *g_world;
}
}  // namespace cst::comm::testing

// CST_TEST_MPI_THREAD_LEVEL: the thread level an executable asks MPI for (default: MULTIPLE).
#ifndef CST_TEST_MPI_THREAD_LEVEL
#define CST_TEST_MPI_THREAD_LEVEL MPI_THREAD_MULTIPLE
#endif

int main(int argc, char** argv) {
  cst::comm::MpiEnvironment env(argc, argv, CST_TEST_MPI_THREAD_LEVEL);
  cst::comm::testing::g_env = &env;
  ::testing::InitGoogleTest(&argc, argv);
  if (env.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new cst::comm::testing::RankFailurePrinter(env.rank()));
  }
  int rc = RUN_ALL_TESTS();
  cst::comm::testing::g_world.reset();
  int any = 0;
  CST_CHECK_MPI(MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  if (env.rank() == 0 && any != rc) std::cerr << "a test failed on another rank" << std::endl;
  return any;
}
