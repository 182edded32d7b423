// bench_seq_parallel --mode balance (docs/SEQUENCE_PARALLEL.md "Balance"): causal global
// attention under sequence parallelism with each rank's own query slices vs the rows split by
// work (SeqChunk::balance_global), S = W ranks, in one run. Times are CPU time of the calling
// thread (CLOCK_THREAD_CPUTIME_ID: the collectives run and wait on the communicator's thread; one
// intra-op thread), so that ranks sharing cores still compare.
//   (1) the global attention of one layer alone: forward + backward of this rank's query range
//       over the gathered [B, H, n, d], per rank, and the (query, key) pairs its kernels get; also
//       for zigzag's two chunks per rank (its CPU time: the same kernels on both ranges, without
//       the token layout, halos and loader zigzag would need) and for rows split by pairs alone
//       (no csa::kRangeRowCost);
//   (2) a training step (the model's blocks on a SeqChunk made here, LM loss of the tied head,
//       backward) per rank, and one rank on the whole sequence: efficiency = one rank's CPU time
//       / (S x the slowest rank's), what S dedicated cores give (a waiting rank idles), and
//       / the S ranks' sum (redundant work only).
// Collective over `world`; rank 0 prints the tables (markdown).
#pragma once

#include <cstdint>
#include <string>

#include "comm/communicator.h"
#include "model/config.h"

namespace cst::bench {

// cfg: causal (task lm); N / W a multiple of cfg.slice_len. The attention: the median of
// max(rounds, 5) after one warm-up; the steps: of `rounds`, without (0: no steps).
void balance_tables(comm::Communicator& world, const model::ModelConfig& cfg, const std::string& preset, int64_t N,
                    int64_t batch, int64_t rounds);

}  // namespace cst::bench
