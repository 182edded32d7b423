// Per-rank measurements of the sequence-parallel benchmarks, and the few statistics their tables
// print. Times are CPU time of the calling thread, so that ranks sharing cores still compare.
#pragma once

#include <string>
#include <vector>

#include "comm/communicator.h"

namespace cst::bench {

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
