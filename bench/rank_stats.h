// Per-rank measurements of the sequence-parallel benchmarks, the few statistics their tables
// print, and the sequence they train on. Times are CPU time of the calling thread, so that ranks
// sharing cores still compare.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "model/config.h"

namespace cst::bench {

// `rows` sequences of N tokens, the same on every rank (seeded here): LM inputs and next-token
// targets; MLM inputs and 15% of the positions as targets (-100 elsewhere). [rows, N] each.
struct Sample {
  at::Tensor ids, labels;
};
Sample make_sample(const model::ModelConfig& cfg, int64_t rows, int64_t N);

// Chunk r of S along the sequence (dim 1) of t [rows, N, ...].
at::Tensor chunk(const at::Tensor& t, int r, int S);

double mib(double bytes);

// CLOCK_THREAD_CPUTIME_ID of the calling thread, in seconds.
double thread_cpu_seconds();

// Collective over g: every rank's v, in rank order, on rank 0 (other ranks: empty).
std::vector<double> gather_to_root(comm::Communicator& g, double v);

double sum_of(const std::vector<double>& v);
double max_of(const std::vector<double>& v);
double max_over_mean(const std::vector<double>& v);  // v non-empty
double median_of(std::vector<double> v);             // v non-empty

// "a, b, c": each x * scale through the printf format fmt (one conversion, e.g. "%.2f").
std::string joined(const std::vector<double>& v, double scale, const char* fmt);

}  // namespace cst::bench
