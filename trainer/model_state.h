// ModelState: the model being trained and what updates it: this rank's replica (under sequence
// parallelism it takes this rank's part of each sequence), its parameters, the gradient reducer
// over the world and the optimizer.
#pragma once

#include <memory>

#include "comm/reducer.h"
#include "model/config.h"
#include "model/model.h"
#include "trainer/optimizer.h"
#include "trainer/run_context.h"

namespace cst::trainer {

struct ModelState {
  // Collective over ctx.comm: builds the model of mc on ctx.device from train.seed (the same on
  // every rank), places it in ctx.groups' layout (model::CstModelImpl::set_sequence_parallel),
  // broadcasts rank 0's parameters, then seeds dropout per rank and builds the optimizer.
  // ctx (and its groups) must outlive the object.
  ModelState(const RunContext& ctx, const model::ModelConfig& mc);

  model::CstModel model{nullptr};
  NamedTensors params;
  std::unique_ptr<comm::GradReducer> reducer;
  std::unique_ptr<Optimizer> opt;
};

}  // namespace cst::trainer
