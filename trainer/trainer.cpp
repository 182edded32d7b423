// The training loop: step, log, evaluate, save, preemption check.
#include "trainer/trainer.h"

#include <torch/torch.h>

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
#include "trainer/batch_tensors.h"
#include "trainer/checkpoint_config.h"
#include "trainer/evaluation.h"
#include "trainer/model_state.h"
#include "trainer/op_profile.h"
#include "trainer/preemption.h"
#include "trainer/run_context.h"
#include "trainer/run_progress.h"
#include "trainer/train_data.h"

namespace cst::trainer {

using Clock = std::chrono::steady_clock;
using torch::Tensor;

namespace {
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
// Every k-th step (k > 0).
bool every(int64_t k, int64_t step) { return k > 0 && step % k == 0; }
}  // namespace

TrainResult Trainer::run() {
  const TrainConfig& cfg = ctx_->cfg;
  const int64_t steps = cfg.train.steps;
  TrainResult res;
  state_->model->train();
  for (int64_t step = ckpt_->start_step + 1; step <= steps; ++step) {  // 1-based, as in every message and log line
    if (step == cfg.log.profile_step) {
      profiled_train_step(step);
    } else {
      PhaseTimer off;
      train_step(step, off);
    }
    if (every(cfg.log.interval, step) || step == steps) log(step, res);
    if (every(cfg.log.eval_interval, step) || step == steps) {
      evaluate(step, res);
      keep_best(step);
    }
    if (every(cfg.checkpoint.weights_interval, step) && step != steps)
      export_weights(cfg.log.dir + "/model_step" + std::to_string(step) + ".h5");
    if (every(cfg.checkpoint.interval, step) && step != steps && ckpt_->last_step != step)
      save_checkpoint(step, !cfg.checkpoint.async);
    if (const int sig = preemption_signal(step)) {
      stop_preempted(step, sig, res);
      return res;
    }
  }
  ckpt_->writer->wait();
  if (ckpt_->last_step != steps) save_checkpoint(steps, true);
  if (cfg.checkpoint.save_final) export_weights(cfg.log.dir + "/model.h5");
  res.steps = steps;
  return res;
}

model::CstModelImpl& Trainer::model() { return *state_->model; }

void Trainer::profiled_train_step(int64_t step) {
  const bool cuda = ctx_->device.is_cuda();
  PhaseTimer phases([cuda] {
    if (cuda) torch::cuda::synchronize();
  });
  const OpProfile ops = profile_ops([&] { train_step(step, phases); }, cuda);
  if (!ctx_->rank0()) return;
  const std::string path = ctx_->cfg.log.dir + "/profile_step" + std::to_string(step) + ".md";
  std::ofstream out(path);
  out << "# Step " << step << " of rank 0\n\nWall time per phase (device synchronised at each boundary):\n\n"
      << phases.table() << "\nOperators:\n\n"
      << ops.table(30);
  CST_CHECK(out.good(), "cannot write the step profile " << path);
  log_->sink->text("profile of step " + std::to_string(step) + ": " + phases.line() + "; operators in " + path);
}

void Trainer::train_step(int64_t step, PhaseTimer& phases) {
  const TrainConfig& cfg = ctx_->cfg;
  const ProcessInfo& proc = ctx_->proc;
  const TaskKind& task = ctx_->task;
  RunLog::Interval& interval = log_->interval;
  if (cfg.debug.fail_rank == proc.rank && cfg.debug.fail_at_step == step)
    CST_THROW("debug: injected failure at step " << step << " on rank " << proc.rank);
  const int W = proc.world_size;
  const int64_t micro = cfg.micro_steps(ctx_->layout()), mb = cfg.train.micro_batch;
  const auto t0 = Clock::now();
  std::optional<dataio::Batch> batch = data_->loader->next();
  CST_CHECK(batch.has_value(), "train loader ended");
  data_->loader_state = batch->state_after;
  interval.data_wait += seconds_since(t0);
  phases.mark("data");
  // This rank's chunk of each sequence (its LM targets are the next tokens, across the border).
  const BatchTensors tensors = batch_tensors(*batch, task, data_->seq_len, ctx_->layout());
  // Predicted tokens (cls: labelled examples) in the global batch (each counted once, on the rank
  // holding it): the loss is normalised by it on every rank.
  const int64_t local_count = tensors.count();
  int64_t global_count = cfg.train.global_batch * data_->seq_len;
  if (task.mlm || task.cls) {
    const auto tc = Clock::now();
    global_count = ctx_->collective("all_reduce(token count) at step " + std::to_string(step),
                                    [&] { return ctx_->comm.all_reduce_int(local_count, comm::ReduceOp::kSum); });
    interval.comm_wait += seconds_since(tc);
  }
  phases.mark("token count");
  const double scale = static_cast<double>(W) / static_cast<double>(std::max<int64_t>(1, global_count));
  for (int64_t m = 0; m < micro; ++m) {
    const BatchTensors t = tensors.rows(m * mb, mb, ctx_->device);
    model::LossSum ls;
    {
      model::Bf16Autocast ac(ctx_->bf16);
      ls = state_->model->loss(t.inputs, t.mask, t.labels);
    }
    phases.mark("forward + loss");
    state_->reducer->prepare_for_backward(m == micro - 1);
    (ls.sum * scale).backward();
    interval.loss_sum += ls.sum.item<double>();
    phases.mark("backward (+ overlapped all-reduce)");
  }
  interval.tokens += local_count;
  if (cfg.debug.hang_rank == proc.rank && cfg.debug.hang_at_step == step)
    std::this_thread::sleep_for(std::chrono::seconds(3600));
  ctx_->collective("gradient all-reduce (finalize) at step " + std::to_string(step),
                   [&] { state_->reducer->finalize(step); });
  interval.comm_wait += state_->reducer->last_stats().wait_seconds;
  phases.mark("gradient all-reduce (finalize)");
  log_->grad_norm = clip_grad_norm(state_->params, cfg.optim.grad_clip);
  phases.mark("clip");
  log_->lr = learning_rate(cfg.optim, cfg.train.steps, step - 1);
  state_->opt->step(log_->lr);
  state_->opt->zero_grad();
  phases.mark("optimizer");
  interval.step_time += seconds_since(t0);
  ++interval.steps;
}

void Trainer::log(int64_t step, TrainResult& res) {
  const TrainConfig& cfg = ctx_->cfg;
  RunLog& l = *log_;
  const std::vector<double> t = ctx_->collective("all_reduce(train loss) at step " + std::to_string(step), [&] {
    return ctx_->comm.all_reduce_doubles({l.interval.loss_sum, static_cast<double>(l.interval.tokens)});
  });
  res.final_train_loss = t[0] / std::max(1.0, t[1]);
  if (l.sink) {
    TrainRecord r;
    r.step = step, r.loss = res.final_train_loss, r.lr = l.lr, r.grad_norm = l.grad_norm;
    r.step_time_s = l.interval.step_time / static_cast<double>(l.interval.steps);
    r.tokens_per_s = static_cast<double>(cfg.train.global_batch * data_->seq_len) / r.step_time_s;
    r.mfu = r.tokens_per_s * l.train_flops_per_token / (static_cast<double>(ctx_->proc.world_size) * l.peak_flops);
    r.data_wait = l.interval.data_wait / l.interval.step_time,
    r.comm_wait = l.interval.comm_wait / l.interval.step_time;
    r.eta_s = r.step_time_s * static_cast<double>(cfg.train.steps - step);
    l.sink->train(r);
  }
  l.interval = RunLog::Interval{};
}

void Trainer::evaluate(int64_t step, TrainResult& res) {
  if (!eval_) return;
  log_->last_eval = eval_->evaluate(*state_->model, step);
  res.final_eval_loss = log_->last_eval->loss;
  if (log_->sink) log_->sink->eval(*log_->last_eval);
}

void Trainer::keep_best(int64_t step) {
  BestCheckpoint* best = ckpt_->best.get();
  if (!best || !log_->last_eval || log_->last_eval->step != step) return;
  const double v = best->value_of(*log_->last_eval);
  if (!best->improves(v)) return;
  ckpt_->writer->protect(step);
  if (ckpt_->last_step != step) save_checkpoint(step, true);
  best->set(step, v);
  if (!ctx_->rank0()) return;
  best->write();
  log_->sink->text("best " + best->metric() + " " + std::to_string(v) + " at step " + std::to_string(step) + ": " +
                   checkpoint::step_dir_name(step) + " kept (best.json)");
}

void Trainer::export_weights(const std::string& path) {
  if (!ctx_->rank0()) return;
  auto lock = h5::lock_library();  // the loader's prefetch thread also uses libhdf5
  model::save_weights(*state_->model, path, data_->tokenizer_sha256());
  log_->sink->text("saved weights to " + path);
}

void Trainer::save_checkpoint(int64_t step, bool sync) {
  const TrainConfig& cfg = ctx_->cfg;
  checkpoint::Manifest m;
  m.step = step;
  m.optimizer_steps = state_->opt->steps_taken();
  m.loader = data_->loader_state;
  m.world_size = ctx_->proc.world_size;
  m.zero_stage = cfg.checkpoint.zero_stage;
  m.flat_numel = state_->opt->flat_numel();
  m.run = describe_run(cfg);
  m.run.tokenizer_sha256 = data_->tokenizer_sha256();
  const at::Generator cuda = ctx_->cuda_generator();
  ctx_->collective("checkpoint save at step " + std::to_string(step), [&] {
    ckpt_->writer->save(*state_->model, *state_->opt, at::globalContext().defaultGenerator(at::kCPU).get_state(),
                        cuda.defined() ? cuda.get_state() : Tensor(), std::move(m));
    if (sync) {
      ckpt_->writer->wait();
      ctx_->comm.barrier();  // every rank knows that step_<N> is committed
    }
  });
  ckpt_->last_step = step;
}

// Every rank learns the largest signal any rank received, at the same step.
int Trainer::preemption_signal(int64_t step) {
  const TrainConfig& cfg = ctx_->cfg;
  if (cfg.debug.signal_rank == ctx_->proc.rank && cfg.debug.signal_at_step == step)
    std::raise(static_cast<int>(cfg.debug.signal));
  return static_cast<int>(ctx_->collective("all_reduce(preemption flag) at step " + std::to_string(step), [&] {
    return ctx_->comm.all_reduce_int(pending_signal(), comm::ReduceOp::kMax);
  }));
}

void Trainer::stop_preempted(int64_t step, int signal, TrainResult& res) {
  if (ctx_->rank0())
    std::printf("signal %d received: saving a checkpoint at step %ld and stopping\n", signal, (long)step);
  ctx_->collective("checkpoint wait", [&] { ckpt_->writer->wait(); });
  if (ckpt_->last_step != step) save_checkpoint(step, true);
  ctx_->collective("barrier (preemption)", [&] { ctx_->comm.barrier(); });
  res.steps = step;
  res.preempted_signal = signal;
}

}  // namespace cst::trainer
