// cst-train's enum options (the field table's enum fields of TrainConfig) and every name each
// accepts, as configs/, slurm/ and the scripts spell them.
#pragma once

#include <string>
#include <vector>

namespace cst::trainer::testing {

struct EnumOption {
  std::string key;                 // e.g. "dist.sdpa"
  std::vector<std::string> names;  // every accepted name
  bool names_in_error;             // the error lists the names (model.* errors name key and value only)
};

inline const std::vector<EnumOption>& enum_options() {
  static const std::vector<EnumOption> kOptions = {
      {"dist.backend", {"auto", "local", "mpi", "nccl"}, true},
      {"dist.device", {"auto", "cpu", "cuda"}, true},
      {"dist.bf16", {"auto", "on", "off"}, true},
      {"dist.sdpa", {"auto", "on", "off"}, true},
      {"train.activation_checkpointing", {"none", "block"}, true},
      {"optim.name", {"adamw", "lamb"}, true},
      {"optim.schedule", {"linear", "cosine", "constant"}, true},
      {"model.arch", {"cst", "full"}, false},
      {"model.task", {"lm", "mlm", "cls"}, false},
      {"model.composition", {"local-global", "global-local", "parallel"}, false},
      {"model.aggregation", {"mean", "max", "linear"}, false},
      {"model.pos_emb", {"auto", "msvipe", "absolute"}, false},
      {"model.csa_kernel", {"auto", "explicit", "fused"}, false},
  };
  return kOptions;
}

}  // namespace cst::trainer::testing
