// Helpers for end-to-end trainer tests: run cst-train under mpirun, read final parameters.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "model/weights_io.h"

namespace cst::testing {

struct JobResult {
  int code = -1;  // exit status of mpirun (-1: killed by a signal)
  double seconds = 0;
  std::string out, err;
};

inline std::string read_file(const std::string& path) {
  std::stringstream ss;
  ss << std::ifstream(path, std::ios::binary).rdbuf();
  return ss.str();
}

// Runs `cst-train args` on np ranks (oversubscribed); stdout / stderr go to <log_prefix>.out/.err.
inline JobResult run_job(int np, const std::string& args, const std::string& log_prefix) {
  const std::string out = log_prefix + ".out", err = log_prefix + ".err";
  const std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 " +
                          std::string(CST_MPIEXEC) + " -np " + std::to_string(np) + " --oversubscribe --bind-to none " +
                          CST_TRAIN_BIN + " " + args + " > " + out + " 2> " + err;
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = std::system(cmd.c_str());
  JobResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = read_file(out), r.err = read_file(err);
  return r;
}

using Params = std::map<std::string, torch::Tensor>;

inline Params load_params(const std::string& weights) {
  Params out;
  model::CstModel m = model::load_model(weights);
  for (auto& p : m->named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

// Runs `cst-train args --log.dir logdir` on np ranks (output in <logdir>.out / .err) to the end:
// the final parameters (<logdir>/model.h5), or {} after a failure, which it reports.
inline Params train_job(int np, const std::string& args, const std::string& logdir) {
  JobResult r = run_job(np, args + " --log.dir " + logdir, logdir);
  EXPECT_EQ(r.code, 0) << r.err << r.out;
  return r.code == 0 ? load_params(logdir + "/model.h5") : Params{};
}

inline double max_diff(const Params& a, const Params& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (const auto& [k, v] : a) d = std::max(d, (v - b.at(k)).abs().max().item<double>());
  return d;
}

// Exactly equal, bit for bit.
inline bool bitwise_equal(const Params& a, const Params& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, v] : a)
    if (!b.count(k) || !torch::equal(v, b.at(k))) return false;
  return true;
}

}  // namespace cst::testing
