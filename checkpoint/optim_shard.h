// The optimizer shards of a checkpoint, optim_rank<r>_of<W>.h5 (docs/CHECKPOINT.md): shard r
// holds partition(N, r, W) of the flat exp_avg / exp_avg_sq (float32) of the saving job,
// whatever its zero stage, and rank r's generator states. Every function takes
// h5::lock_library() itself.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>

#include "checkpoint/manifest.h"
#include "checkpoint/optimizer_state.h"

namespace cst::checkpoint {

inline constexpr const char* kShardFormat = "cst-train.optim-shard";
inline constexpr int64_t kShardVersion = 1;
inline constexpr int64_t kMaxRngStateBytes = 1 << 20;  // a larger rng_cpu / rng_cuda is damaged

// One rank's shard, in host memory.
struct OptimShard {
  int rank = 0, world = 1;
  FlatRange range;                 // partition(flat_numel, rank, world)
  int64_t flat_numel = 0;          // N
  int64_t optimizer_steps = 0;     // bias-correction count
  at::Tensor exp_avg, exp_avg_sq;  // float32 [range.size()], CPU
  at::Tensor rng_cpu, rng_cuda;    // uint8 [k], CPU; undefined = not saved
};

// Creates path (fails if it exists) holding s.
void write_optim_shard(const std::string& path, const OptimShard& s);

// Fills opt's held range of the flat state, and its bias-correction count, from the shards of
// the checkpoint in step_dir (any saving world size: each overlapping shard's slice is read).
// Throws InputError naming the file, attribute and value when m.flat_numel differs from the
// model's or a shard's attributes or datasets disagree with m.
void read_optimizer_state(const std::string& step_dir, const Manifest& m, OptimizerState& opt);

// Generator states of `rank` as saved by a job of m.world_size ranks (second: undefined when the
// shard has none). Throws InputError naming the file when a state is larger than
// kMaxRngStateBytes.
std::pair<at::Tensor, at::Tensor> read_rng_state(const std::string& step_dir, const Manifest& m, int rank);

}  // namespace cst::checkpoint
