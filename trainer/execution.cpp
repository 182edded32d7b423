#include "trainer/execution.h"

#include "common/error.h"

namespace cst::trainer {

std::string Device::str() const { return is_cuda() ? "cuda:" + std::to_string(index) : "cpu"; }

model::ModelConfig Execution::apply(model::ModelConfig mc) const {
  mc.full_sdpa = sdpa;
  mc.activation_checkpointing = activation_checkpointing;
  return mc;
}

std::string Execution::str() const {
  return "device " + device.str() + (bf16 ? " (bf16 autocast)" : "") + (sdpa ? "; full attention through SDPA" : "") +
         (activation_checkpointing ? "; activation checkpointing" : "");
}

Execution resolve_execution(const TrainConfig& cfg, const ProcessInfo& proc, int cuda_devices) {
  const DistOptions& d = cfg.dist;
  CST_INPUT_CHECK(
      d.device != DeviceChoice::kCuda || cuda_devices > 0,
      "dist.device = cuda but no CUDA device is available on " << proc.host << " (rank " << proc.rank << ")");
  Execution ex;
  if (d.device != DeviceChoice::kCpu && cuda_devices > 0) ex.device = Device::cuda(proc.local_rank % cuda_devices);
  const bool cuda = ex.device.is_cuda();
  CST_INPUT_CHECK(d.bf16 != Toggle::kOn || cuda, "dist.bf16 = on needs a CUDA device");
  ex.bf16 = cuda && d.bf16 != Toggle::kOff;
  ex.sdpa = cfg.model.arch == model::Arch::kFull && (d.sdpa == Toggle::kOn || (d.sdpa == Toggle::kAuto && cuda));
  ex.activation_checkpointing = cfg.train.activation_checkpointing == Checkpointing::kBlock;
  return ex;
}

}  // namespace cst::trainer
