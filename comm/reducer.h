// GradReducer: data-parallel gradient averaging overlapped with backward, as PyTorch DDP's
// reducer does it (docs/COMM.md).
//
// Parameters are grouped into buckets in REVERSE registration order (the order in which their
// gradients become ready during backward, roughly): bucket 0 is closed once it holds
// >= first_bucket_bytes, later ones at >= bucket_bytes; a dtype or device change also closes a
// bucket. Each bucket owns a flat buffer [bucket numel]. An autograd post-hook on every
// parameter's gradient accumulator copies the finished gradient into its bucket; when the
// bucket is complete its non-blocking all_reduce(sum) starts, so communication runs while
// backward computes earlier layers. Buckets are launched strictly in index order (a complete
// bucket waits for all earlier ones), so every rank issues the same collectives in the same
// order, and finalize() waits for them in index order, divides by the world size and copies the
// averages back into param.grad().
//
// Training loop (every rank; accum micro-batches per optimizer step):
//
//   GradReducer reducer(comm, *model);          // after the model is on its device and dtype
//   reducer.broadcast_parameters(cfg.hash());   // collective: same shapes + config, then rank 0's
//   for (int64_t step = 0; ...; ++step) {
//     for (int m = 0; m < accum; ++m) {
//       reducer.prepare_for_backward(/*sync=*/m == accum - 1);   // before each backward
//       loss_m.backward();                                        // grads accumulate in .grad()
//     }
//     reducer.finalize(step);      // collective: .grad() = average over ranks of the sum
//     clip, optimizer.step(), optimizer.zero_grad();
//     reducer.last_stats().wait_seconds / comm_seconds ...       // for "% waiting for comm"
//   }
//
// Unused parameters: a parameter whose gradient is not produced by a synchronising backward
// never blocks: finalize() launches the buckets not yet launched, in order, with zeros for the
// missing gradients, sets their .grad() to the (zero) average, and rank 0 warns once naming
// them. Buckets holding such a parameter then cannot overlap with backward. As with DDP's
// find_unused_parameters, the parameter must be unused on ALL ranks; if it is used on some,
// their gradients are averaged with zeros from the others (no hang, but not a true average).
//
// Contract: not copyable; `comm` must outlive the reducer; the parameters must not be replaced
// (set_data to another device/dtype) while it lives. Each synchronising backward must be
// preceded by prepare_for_backward(true) and followed by finalize(); a parameter's gradient
// ready twice in one synchronising backward throws cst::Error. backward() of other graphs while
// no synchronising step is open (e.g. after finalize) is ignored by the reducer.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.h"

namespace torch::nn {
class Module;
}
namespace torch::autograd {
struct Node;
}

namespace cst::comm {

struct ReducerOptions {
  int64_t first_bucket_bytes = int64_t{1} << 20;  // bucket 0: small, so its all-reduce starts early
  int64_t bucket_bytes = int64_t{25} << 20;       // later buckets: fewer, larger messages
  double timeout_s = 600.0;                       // watchdog: finalize() throws CommTimeout when a bucket takes longer
  // Launch buckets from autograd hooks during backward. false: all buckets are launched in
  // finalize() (no overlap; the benchmark's baseline).
  bool overlap = true;
};

// Per synchronising step (finalize); times in seconds.
struct ReducerStats {
  int64_t step = -1;
  int buckets = 0;
  int buckets_launched_in_backward = 0;  // launched from hooks (the rest from finalize)
  int64_t bytes = 0;                     // bytes all-reduced by this rank
  double comm_seconds = 0;               // sum of the all-reduces' own run time (Work::elapsed_seconds)
  double wait_seconds = 0;               // finalize() blocked waiting for all-reduces: the exposed part
  double finalize_seconds = 0;           // all of finalize() (launches, wait, division, copy-back)
};

class GradReducer {
 public:
  using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

  // params: (name, parameter) in registration order; those not requiring grad are skipped.
  // buffers: only broadcast by broadcast_parameters(). Registers one post-hook per parameter
  // on its gradient accumulator (removed by the destructor). Not collective.
  GradReducer(Communicator& comm, NamedTensors params, NamedTensors buffers, ReducerOptions opts);
  // All of module's parameters and buffers, recursively, in registration order.
  GradReducer(Communicator& comm, torch::nn::Module& module, ReducerOptions opts = {});
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // Collective. Checks that every rank has the same parameter and buffer count, names, shapes
  // and dtypes, and the same config_hash; otherwise throws cst::Error on every rank naming the
  // first mismatching parameter (or the hash) and the ranks. Then copies rank 0's parameters
  // and buffers to all ranks.
  void broadcast_parameters(uint64_t config_hash);

  // Call before each backward. sync = false (a gradient-accumulation micro-step): gradients
  // just accumulate in .grad(), nothing is communicated. sync = true: this backward's
  // gradients are reduced; finalize() must follow.
  void prepare_for_backward(bool sync);

  // Collective after a synchronising backward (a no-op after prepare_for_backward(false)).
  // Launches what backward did not, waits for every bucket in index order (each at most
  // timeout_s: CommTimeout naming operation, bucket, bytes and step), and writes the average
  // over ranks into every parameter's .grad().
  void finalize(int64_t step);

  const ReducerStats& last_stats() const { return last_; }

  struct BucketInfo {
    std::vector<std::string> params;  // in bucket order (reverse registration order)
    int64_t bytes = 0;
  };
  std::vector<BucketInfo> bucket_layout() const;

 private:
  struct Var {
    std::string name;
    at::Tensor param;
    size_t bucket = 0;
    int64_t offset = 0, numel = 0;  // in the bucket buffer, elements
    bool ready = false;
  };
  struct Bucket {
    std::vector<size_t> vars;  // indices into vars_
    at::Tensor buffer;         // [numel] flat gradients
    int64_t bytes = 0;
    size_t pending = 0;  // gradients not yet ready this step
    bool in_backward = false;
    std::unique_ptr<Work> work;
  };
  class Hook;

  void mark_ready(size_t var);  // from the autograd hook
  void launch_ready_locked();   // launches complete buckets in index order
  void launch_locked(size_t b, bool in_backward);

  Communicator& comm_;
  ReducerOptions opts_;
  std::vector<Var> vars_;  // trainable parameters, registration order
  NamedTensors buffers_;
  std::vector<Bucket> buckets_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // kept alive: hooks live there
  std::vector<uintptr_t> hook_keys_;

  std::mutex mu_;  // hooks may run on autograd device threads
  bool armed_ = false, sync_ = false;
  size_t next_launch_ = 0;
  bool warned_unused_ = false;
  ReducerStats last_;
};

}  // namespace cst::comm
