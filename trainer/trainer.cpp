// The training loop: step, log, evaluate, save, preemption check.
#include "trainer/trainer.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <thread>

#include "common/error.h"
#include "common/h5.h"
#include "model/autocast_scope.h"
#include "model/loss.h"
#include "model/weights_io.h"
#include "trainer/checkpoint_config.h"
#include "trainer/preemption.h"
#include "trainer/trainer_state.h"

namespace cst::trainer {

using Clock = std::chrono::steady_clock;
using torch::Tensor;

namespace {
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
// Every k-th step (k > 0).
bool every(int64_t k, int64_t step) { return k > 0 && step % k == 0; }
}  // namespace

TrainResult Trainer::run() {
  TrainerState& s = *s_;
  const TrainConfig& cfg = s.cfg;
  const int64_t steps = cfg.train.steps;
  TrainResult res;
  s.model->train();
  for (int64_t step = s.start_step + 1; step <= steps; ++step) {  // 1-based, as in every message and log line
    if (step == cfg.log.profile_step) {
      s.profiled_train_step(step);
    } else {
      PhaseTimer off;
      s.train_step(step, off);
    }
    if (every(cfg.log.interval, step) || step == steps) s.log(step, res);
    if (every(cfg.log.eval_interval, step) || step == steps) {
      s.evaluate(step, res);
      s.keep_best(step);
    }
    if (every(cfg.checkpoint.weights_interval, step) && step != steps)
      s.export_weights(cfg.log.dir + "/model_step" + std::to_string(step) + ".h5");
    if (every(cfg.checkpoint.interval, step) && step != steps && s.last_checkpoint_step != step)
      s.save_checkpoint(step, !cfg.checkpoint.async);
    if (const int sig = s.preemption_signal(step)) {
      s.stop_preempted(step, sig, res);
      return res;
    }
  }
  s.ckpt->wait();
  if (s.last_checkpoint_step != steps) s.save_checkpoint(steps, true);
  if (cfg.checkpoint.save_final) s.export_weights(cfg.log.dir + "/model.h5");
  res.steps = steps;
  return res;
}

model::CstModelImpl& Trainer::model() { return *s_->model; }

void TrainerState::profiled_train_step(int64_t step) {
  PhaseTimer phases([this] {
    if (device.is_cuda()) torch::cuda::synchronize();
  });
  const OpProfile ops = profile_ops([&] { train_step(step, phases); }, device.is_cuda());
  if (!rank0()) return;
  const std::string path = cfg.log.dir + "/profile_step" + std::to_string(step) + ".md";
  std::ofstream out(path);
  out << "# Step " << step << " of rank 0\n\nWall time per phase (device synchronised at each boundary):\n\n"
      << phases.table() << "\nOperators:\n\n"
      << ops.table(30);
  CST_CHECK(out.good(), "cannot write the step profile " << path);
  sink->text("profile of step " + std::to_string(step) + ": " + phases.line() + "; operators in " + path);
}

void TrainerState::train_step(int64_t step, PhaseTimer& phases) {
  if (cfg.debug.fail_rank == proc.rank && cfg.debug.fail_at_step == step)
    CST_THROW("debug: injected failure at step " << step << " on rank " << proc.rank);
  const int W = proc.world_size;
  const int64_t micro = cfg.micro_steps(W), mb = cfg.train.micro_batch;
  const auto t0 = Clock::now();
  std::optional<dataio::Batch> batch = loader->next();
  CST_CHECK(batch.has_value(), "train loader ended");
  loader_state = batch->state_after;
  interval.data_wait += seconds_since(t0);
  phases.mark("data");
  // This rank's chunk of each sequence (its LM targets are the next tokens, across the border).
  Tensor ids = to_tensor(batch->input_ids, batch->rows, batch->cols, torch::kLong);
  // cls: one label per row [rows] (no sequence parallelism).
  Tensor labels = cls   ? cls_labels(*batch, regression)
                  : mlm ? chunk(to_tensor(batch->labels, batch->rows, batch->cols, torch::kLong))
                        : chunk(ids.narrow(1, 1, seq_len));
  Tensor inputs = chunk(mlm || cls ? ids : ids.narrow(1, 0, seq_len));
  Tensor mask = chunk(mlm || cls ? to_tensor(batch->attention_mask, batch->rows, batch->cols, torch::kBool) : Tensor());
  // Predicted tokens (cls: labelled examples) in the global batch (each counted once, on the rank
  // holding it): the loss is normalised by it on every rank.
  const int64_t local_count = cls ? labelled_count(labels) : labels.ne(-100).sum().item<int64_t>();
  int64_t global_count = cfg.train.global_batch * seq_len;
  if (mlm || cls) {
    const auto tc = Clock::now();
    global_count = collective("all_reduce(token count) at step " + std::to_string(step),
                              [&] { return comm.all_reduce_int(local_count, comm::ReduceOp::kSum); });
    interval.comm_wait += seconds_since(tc);
  }
  phases.mark("token count");
  const double scale = static_cast<double>(W) / static_cast<double>(std::max<int64_t>(1, global_count));
  for (int64_t m = 0; m < micro; ++m) {
    auto rows = [&](const Tensor& t) { return t.defined() ? t.narrow(0, m * mb, mb).to(device) : t; };
    model::LossSum ls;
    {
      model::Bf16Autocast ac(bf16);
      ls = model->loss(rows(inputs), rows(mask), rows(labels));
    }
    phases.mark("forward + loss");
    reducer->prepare_for_backward(m == micro - 1);
    (ls.sum * scale).backward();
    interval.loss_sum += ls.sum.item<double>();
    phases.mark("backward (+ overlapped all-reduce)");
  }
  interval.tokens += local_count;
  if (cfg.debug.hang_rank == proc.rank && cfg.debug.hang_at_step == step)
    std::this_thread::sleep_for(std::chrono::seconds(3600));
  collective("gradient all-reduce (finalize) at step " + std::to_string(step), [&] { reducer->finalize(step); });
  interval.comm_wait += reducer->last_stats().wait_seconds;
  phases.mark("gradient all-reduce (finalize)");
  grad_norm = clip_grad_norm(params, cfg.optim.grad_clip);
  phases.mark("clip");
  lr = learning_rate(cfg.optim, cfg.train.steps, step - 1);
  opt->step(lr);
  opt->zero_grad();
  phases.mark("optimizer");
  interval.step_time += seconds_since(t0);
  ++interval.steps;
}

void TrainerState::log(int64_t step, TrainResult& res) {
  const std::vector<double> t = collective("all_reduce(train loss) at step " + std::to_string(step), [&] {
    return comm.all_reduce_doubles({interval.loss_sum, static_cast<double>(interval.tokens)});
  });
  res.final_train_loss = t[0] / std::max(1.0, t[1]);
  if (sink) {
    TrainRecord r;
    r.step = step, r.loss = res.final_train_loss, r.lr = lr, r.grad_norm = grad_norm;
    r.step_time_s = interval.step_time / static_cast<double>(interval.steps);
    r.tokens_per_s = static_cast<double>(cfg.train.global_batch * seq_len) / r.step_time_s;
    r.mfu = r.tokens_per_s * train_flops_per_token / (static_cast<double>(proc.world_size) * peak_flops);
    r.data_wait = interval.data_wait / interval.step_time, r.comm_wait = interval.comm_wait / interval.step_time;
    r.eta_s = r.step_time_s * static_cast<double>(cfg.train.steps - step);
    sink->train(r);
  }
  interval = Interval{};
}

std::string TrainerState::tokenizer_sha256() const {
  const std::string shards = train_src ? train_src->tokenizer_sha256() : "";
  return shards.empty() ? cfg.data.tokenizer_sha256 : shards;
}

void TrainerState::export_weights(const std::string& path) {
  if (!rank0()) return;
  auto lock = h5::lock_library();  // the loader's prefetch thread also uses libhdf5
  model::save_weights(*model, path, tokenizer_sha256());
  sink->text("saved weights to " + path);
}

void TrainerState::save_checkpoint(int64_t step, bool sync) {
  checkpoint::Manifest m;
  m.step = step;
  m.optimizer_steps = opt->steps_taken();
  m.loader = loader_state;
  m.world_size = proc.world_size;
  m.zero_stage = cfg.checkpoint.zero_stage;
  m.flat_numel = opt->flat_numel();
  m.run = describe_run(cfg);
  m.run.tokenizer_sha256 = tokenizer_sha256();
  const at::Generator cuda = cuda_generator();
  collective("checkpoint save at step " + std::to_string(step), [&] {
    ckpt->save(*model, *opt, at::globalContext().defaultGenerator(at::kCPU).get_state(),
               cuda.defined() ? cuda.get_state() : Tensor(), std::move(m));
    if (sync) {
      ckpt->wait();
      comm.barrier();  // every rank knows that step_<N> is committed
    }
  });
  last_checkpoint_step = step;
}

// Every rank learns the largest signal any rank received, at the same step.
int TrainerState::preemption_signal(int64_t step) {
  if (cfg.debug.signal_rank == proc.rank && cfg.debug.signal_at_step == step)
    std::raise(static_cast<int>(cfg.debug.signal));
  return static_cast<int>(collective("all_reduce(preemption flag) at step " + std::to_string(step),
                                     [&] { return comm.all_reduce_int(pending_signal(), comm::ReduceOp::kMax); }));
}

void TrainerState::stop_preempted(int64_t step, int signal, TrainResult& res) {
  if (rank0()) std::printf("signal %d received: saving a checkpoint at step %ld and stopping\n", signal, (long)step);
  collective("checkpoint wait", [&] { ckpt->wait(); });
  if (last_checkpoint_step != step) save_checkpoint(step, true);
  collective("barrier (preemption)", [&] { comm.barrier(); });
  res.steps = step;
  res.preempted_signal = signal;
}

}  // namespace cst::trainer
