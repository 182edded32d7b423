// bench_seq_parallel --mode scale (docs/SEQUENCE_PARALLEL.md "Scaling"): training steps of the
// model with block activation checkpointing at one sequence length N over S = 1, 2, 4, 8 ranks
// (each S dividing W, the first S ranks of the world; the others wait), beside one rank training
// N / S tokens alone, in one run. Per configuration and rank: CPU time of the step on the calling
// thread (one intra-op thread; the collectives run and wait on the communicator's thread) and
// peak CPU tensor memory (model::MemoryTracker, parameters included). The table gives
//   efficiency  = one rank's CPU time at N / the S ranks' sum (redundant work only), and
//                 / (S x the slowest rank's) (what S dedicated cores give);
//   balance     = max / mean of the ranks' CPU time;
//   memory      = the largest rank's peak / one rank's peak at N / S (what sequence parallelism
//                 adds beyond the chunk);
//   MFU ratio   = model FLOPs per CPU second of the group (3 x model::forward_flops_per_token at
//                 N per token, over S x the slowest rank) / those of one rank at N / S (the same
//                 tokens per rank; its global work per token is smaller). The peak cancels.
//                 Twice: against one rank at N / S alone, and against the mean of S ranks each
//                 training N / S tokens of its own at the same time, which shares the cores and
//                 memory bandwidth as the S sequence-parallel ranks do (where ranks share cores,
//                 the fair reference; on dedicated cores the two agree).
// Collective over `world`; rank 0 prints the table (markdown).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "model/config.h"

namespace cst::bench {

struct ScaleOptions {
  std::string preset;
  model::ModelConfig cfg;  // causal or not; checkpointing is forced to block here
  int64_t N = 0;           // N / S a multiple of cfg.slice_len for every S
  std::vector<int> sps;    // group sizes, each dividing the world size; 1 adds one rank at N
  int64_t batch = 1;
  int64_t rounds = 1;  // median over rounds; a step is seconds long, no warm-up
};

void scale_table(comm::Communicator& world, const ScaleOptions& o);

}  // namespace cst::bench
