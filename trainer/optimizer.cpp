#include "trainer/optimizer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "comm/communicator.h"
#include "common/error.h"

namespace cst::trainer {

Optimizer::Optimizer(NamedTensors params, const OptimOptions& opt, comm::Communicator* comm, int zero_stage, bool fused)
    : fused_(fused && opt.name == OptimizerKind::kAdamW), opt_(opt), comm_(comm) {
  CST_CHECK(zero_stage == 0 || comm != nullptr, "Optimizer: zero_stage 1 needs a communicator");
  sharded_ = zero_stage == 1 && comm->size() > 1;
  at::TensorOptions topt;
  for (auto& [name, p] : params) {
    if (!p.requires_grad()) continue;
    CST_CHECK(p.is_contiguous(), "Optimizer: parameter '" << name << "' is not contiguous");
    if (slots_.empty()) topt = p.options();
    CST_CHECK(p.scalar_type() == topt.dtype().toScalarType() && p.device() == topt.device(),
              "Optimizer: parameter '" << name << "' differs in dtype or device from the first one");
    Slot s;
    s.name = name, s.param = p, s.offset = numel_, s.decay = decays(name, p);
    numel_ += p.numel();
    slots_.push_back(std::move(s));
  }
  held_ = sharded_ ? checkpoint::partition(numel_, comm->rank(), comm->size()) : checkpoint::FlatRange{0, numel_};
  step_count_ = at::zeros({}, topt.dtype(at::kFloat).requires_grad(false));
  exp_avg_ = at::zeros({held_.size()}, topt.requires_grad(false));
  exp_avg_sq_ = at::zeros({held_.size()}, topt.requires_grad(false));
  for (auto& s : slots_) {
    s.lo = std::clamp(held_.begin - s.offset, int64_t{0}, s.param.numel());
    s.hi = std::clamp(held_.end - s.offset, int64_t{0}, s.param.numel());
    const int64_t at_flat = s.hi > s.lo ? s.offset + s.lo - held_.begin : 0;  // empty pieces: any valid start
    s.exp_avg = exp_avg_.narrow(0, at_flat, s.hi - s.lo);
    s.exp_avg_sq = exp_avg_sq_.narrow(0, at_flat, s.hi - s.lo);
  }
}

bool Optimizer::decays(const std::string& name, const at::Tensor& p) const {
  if (opt_.decay_all) return true;
  for (const char* emb : {"tok_emb.", "pos_local", "pos_global", "abs_pos"})
    if (name.rfind(emb, 0) == 0) return false;
  return p.dim() > 1;
}

void Optimizer::adamw_fused(double lr) {
  step_count_.fill_(static_cast<double>(t_));  // the kernel reads t for the bias corrections
  for (bool decay : {true, false}) {
    std::vector<at::Tensor> p, g, m, v, steps;
    for (Slot& s : slots_) {
      if (s.decay != decay || !s.param.grad().defined() || s.hi == s.lo) continue;
      p.push_back(s.held_param());
      g.push_back(s.held_grad());
      m.push_back(s.exp_avg), v.push_back(s.exp_avg_sq), steps.push_back(step_count_);
    }
    if (p.empty()) continue;
    at::_fused_adamw_(p, g, m, v, /*max_exp_avg_sqs=*/{}, steps, lr, opt_.beta1, opt_.beta2,
                      decay ? opt_.weight_decay : 0.0, opt_.eps, /*amsgrad=*/false, /*maximize=*/false);
  }
}

void Optimizer::step(double lr) {
  ++t_;
  if (fused_) {
    at::NoGradGuard no_grad;
    adamw_fused(lr);
    if (sharded_) all_gather_params();
    return;
  }
  const double b1 = opt_.beta1, b2 = opt_.beta2;
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(t_));
  at::NoGradGuard no_grad;
  const bool lamb = opt_.name == OptimizerKind::kLamb;
  std::vector<at::Tensor> updates(slots_.size());
  std::vector<double> sq(2 * slots_.size(), 0.0);  // LAMB: per slot ||p||^2, ||update||^2 (held piece)
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    const at::Tensor& grad = s.param.grad();
    if (!grad.defined() || s.hi == s.lo) continue;
    const at::Tensor g = s.held_grad();
    at::Tensor p = s.held_param();
    const double wd = s.decay ? opt_.weight_decay : 0.0;
    s.exp_avg.mul_(b1).add_(g, 1.0 - b1);
    s.exp_avg_sq.mul_(b2).addcmul_(g, g, 1.0 - b2);
    if (!lamb) {
      if (wd > 0) p.mul_(1.0 - lr * wd);
      at::Tensor denom = (s.exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(opt_.eps);
      p.addcdiv_(s.exp_avg, denom, -lr / bc1);
    } else {
      at::Tensor update = (s.exp_avg / bc1) / ((s.exp_avg_sq / bc2).sqrt_().add_(opt_.eps));
      if (wd > 0) update.add_(p, wd);
      sq[2 * i] = p.to(at::kDouble).pow(2).sum().item<double>();
      sq[2 * i + 1] = update.to(at::kDouble).pow(2).sum().item<double>();
      updates[i] = std::move(update);
    }
  }
  if (lamb) {
    if (sharded_) {
      sq = comm_->all_reduce_doubles(sq);
    }
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (!updates[i].defined()) continue;
      const double p_norm = std::sqrt(sq[2 * i]), u_norm = std::sqrt(sq[2 * i + 1]);
      const double trust = (p_norm > 0 && u_norm > 0) ? p_norm / u_norm : 1.0;
      Slot& s = slots_[i];
      s.held_param().add_(updates[i], -lr * trust);
    }
  }
  if (sharded_) all_gather_params();
}

void Optimizer::all_gather_params() {
  const int w = comm_->size();
  const int64_t per = (numel_ + w - 1) / w;
  at::Tensor mine = at::zeros({per}, exp_avg_.options());
  for (const auto& s : slots_)
    if (s.hi > s.lo) mine.narrow(0, s.offset + s.lo - held_.begin, s.hi - s.lo).copy_(s.held_param());
  at::Tensor all = at::empty({w, per}, exp_avg_.options());
  comm_->all_gather(mine, all);
  at::Tensor flat = all.view({-1});
  for (auto& s : slots_) s.param.view({-1}).copy_(flat.narrow(0, s.offset, s.param.numel()));
}

void Optimizer::load_state(const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq) {
  CST_CHECK(exp_avg.numel() == held_.size() && exp_avg_sq.numel() == held_.size(),
            "Optimizer::load_state: expected " << held_.size() << " elements, got " << exp_avg.numel() << " and "
                                               << exp_avg_sq.numel());
  at::NoGradGuard no_grad;
  exp_avg_.copy_(exp_avg.reshape({-1}));
  exp_avg_sq_.copy_(exp_avg_sq.reshape({-1}));
}

void Optimizer::zero_grad() {
  for (auto& s : slots_)
    if (s.param.grad().defined()) s.param.mutable_grad().zero_();
}

double clip_grad_norm(const NamedTensors& params, double max_norm) {
  at::NoGradGuard no_grad;
  double sq = 0;
  for (const auto& [name, p] : params)
    if (p.grad().defined()) sq += p.grad().to(at::kDouble).pow(2).sum().item<double>();
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const auto& [name, p] : params)
      if (p.grad().defined()) p.grad().mul_(scale);
  }
  return norm;
}

}  // namespace cst::trainer
