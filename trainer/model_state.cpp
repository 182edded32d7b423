#include "trainer/model_state.h"

namespace cst::trainer {

ModelState::ModelState(const RunContext& ctx, const model::ModelConfig& mc) {
  const TrainConfig& cfg = ctx.cfg;
  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed));  // identical init on every rank
  model = model::CstModel(mc);
  model->to(ctx.device);
  model->set_sequence_parallel(ctx.layout(), ctx.groups.seq.get());
  for (auto& item : model->named_parameters()) params.emplace_back(item.key(), item.value());
  comm::ReducerOptions ro;
  ro.first_bucket_bytes = static_cast<int64_t>(cfg.dist.bucket_first_mb * 1048576.0);
  ro.bucket_bytes = static_cast<int64_t>(cfg.dist.bucket_mb * 1048576.0);
  ro.timeout_s = cfg.dist.comm_timeout_s;
  reducer = std::make_unique<comm::GradReducer>(ctx.comm, *model, ro);
  ctx.collective("broadcast_parameters", [&] { reducer->broadcast_parameters(cfg.model.hash()); });
  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed) * 1000003ull +
                     static_cast<uint64_t>(ctx.proc.rank));  // dropout
  opt = std::make_unique<Optimizer>(params, cfg.optim, &ctx.comm, static_cast<int>(cfg.checkpoint.zero_stage));
}

}  // namespace cst::trainer
