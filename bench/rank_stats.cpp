#include "bench/rank_stats.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <numeric>

namespace cst::bench {

Sample make_sample(const model::ModelConfig& cfg, int64_t rows, int64_t N) {
  torch::manual_seed(7);
  torch::Tensor w = torch::randint(cfg.vocab_size, {rows, N + 1}, torch::kLong);
  if (cfg.causal()) return {w.narrow(1, 0, N), w.narrow(1, 1, N)};
  torch::Tensor ids = w.narrow(1, 0, N);
  return {ids, torch::where(torch::rand({rows, N}) < 0.15, ids, torch::full_like(ids, -100))};
}

at::Tensor chunk(const at::Tensor& t, int r, int S) { return t.narrow(1, r * (t.size(1) / S), t.size(1) / S); }

double mib(double bytes) { return bytes / 1048576.0; }

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

std::vector<double> gather_to_root(comm::Communicator& g, double v) {
  torch::Tensor all = torch::zeros({g.size()}, torch::kDouble);
  all[g.rank()] = v;
  g.all_reduce(all);
  return g.rank() == 0 ? std::vector<double>(all.data_ptr<double>(), all.data_ptr<double>() + g.size())
                       : std::vector<double>{};
}

double sum_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }
double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }
double max_over_mean(const std::vector<double>& v) { return max_of(v) / (sum_of(v) / static_cast<double>(v.size())); }

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string joined(const std::vector<double>& v, double scale, const char* fmt) {
  std::string s;
  char buf[32];
  for (double x : v) s += (s.empty() ? "" : ", ") + std::string(buf, std::snprintf(buf, sizeof buf, fmt, x * scale));
  return s;
}

}  // namespace cst::bench
