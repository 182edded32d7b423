// Execution: how one cst-train rank computes (its device, bfloat16 autocast, SDPA for full
// attention, activation checkpointing), resolved once from TrainConfig's execution choices
// (dist.device, dist.bf16, dist.sdpa, train.activation_checkpointing). Torch-free: the number of
// CUDA devices is an argument, so every resolution is testable on any machine; the trainer asks
// torch for it (setup_execution, trainer/trainer.h).
#pragma once

#include <string>

#include "model/config.h"
#include "trainer/train_config.h"
#include "trainer/train_types.h"

namespace cst::trainer {

// A device one rank computes on: the CPU, or CUDA device `index`.
struct Device {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;
  int index = -1;  // CUDA device ordinal; -1 for the CPU

  static Device cpu() { return {}; }
  static Device cuda(int index) { return {Kind::kCuda, index}; }
  bool is_cuda() const { return kind == Kind::kCuda; }
  std::string str() const;  // "cpu" | "cuda:<index>", as torch::Device spells it
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
};

// The resolved choices: no `auto` is left.
struct Execution {
  Device device;
  bool bf16 = false;                      // bfloat16 autocast in forward (CUDA only)
  bool sdpa = false;                      // model.arch = full through at::scaled_dot_product_attention
  bool activation_checkpointing = false;  // keep each block's input only; recompute the block in backward

  // mc with its how-to-compute fields set from this (full_sdpa, activation_checkpointing).
  model::ModelConfig apply(model::ModelConfig mc) const;
  // The setup log's words: "device cuda:0 (bf16 autocast); full attention through SDPA;
  // activation checkpointing", each part only when it holds ("device cpu" at the least).
  std::string str() const;
};

// The one place `auto` is resolved, for rank proc on a host with cuda_devices CUDA devices (0:
// none, or a build without CUDA):
//   device: cpu when dist.device = cpu or cuda_devices = 0, else cuda:(proc.local_rank % cuda_devices);
//   bf16:   dist.bf16 = on, or auto, on a CUDA device;
//   sdpa:   model.arch = full, and dist.sdpa = on, or auto on a CUDA device;
//   activation_checkpointing: train.activation_checkpointing = block.
// Throws InputError naming the key and value for dist.device = cuda without a CUDA device (and
// proc's host and rank) and for dist.bf16 = on without one.
Execution resolve_execution(const TrainConfig& cfg, const ProcessInfo& proc, int cuda_devices);

}  // namespace cst::trainer
