// The overlap mode of bench_seq_parallel (bench_seq_parallel.cpp): exposed communication of
// one CSA layer under sequence parallelism, blocking vs overlapped exchanges, in one run.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "model/config.h"

namespace cst::bench {

struct OverlapOptions {
  std::string preset;                                 // model shape, for the header line
  std::vector<int64_t> ns;                            // sequence lengths N, a table block each
  int64_t batch = 1;                                  // sequences per forward
  int64_t rounds = 5;                                 // timed rounds per schedule (after one warm-up), interleaved
  std::function<model::ModelConfig(int64_t)> config;  // the layer's configuration at N
};

// Collective over `world` (S = its size ranks hold one sequence): for each N and composition,
// one CSA layer, forward + backward on this rank's chunk, with SeqGroup::overlap false
// (blocking: each exchange waited for where it starts) and true (waited for where its result is
// used), alternating; prints (rank 0) the medians over rounds of the slowest rank's seconds
// blocked in the exchanges (halo, all-gather, backward and, of it, the wait for the all-gather's
// reduce-scatter) and of the layer's time.
void overlap_table(comm::Communicator& world, const OverlapOptions& o);

}  // namespace cst::bench
