#include "trainer/optimizer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

namespace cst::trainer {

Optimizer::Optimizer(NamedTensors params, const OptimOptions& opt) : opt_(opt) {
  for (auto& [name, p] : params) {
    if (!p.requires_grad()) continue;
    slots_.push_back({name, p, at::zeros_like(p, at::MemoryFormat::Contiguous),
                      at::zeros_like(p, at::MemoryFormat::Contiguous), decays(name, p)});
  }
}

bool Optimizer::decays(const std::string& name, const at::Tensor& p) const {
  if (opt_.decay_all) return true;
  for (const char* emb : {"tok_emb.", "pos_local", "pos_global", "abs_pos"})
    if (name.rfind(emb, 0) == 0) return false;
  return p.dim() > 1;
}

void Optimizer::step(double lr) {
  ++t_;
  const double b1 = opt_.beta1, b2 = opt_.beta2;
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(t_));
  at::NoGradGuard no_grad;
  for (auto& s : slots_) {
    const at::Tensor& g = s.param.grad();
    if (!g.defined()) continue;
    const double wd = s.decay ? opt_.weight_decay : 0.0;
    s.exp_avg.mul_(b1).add_(g, 1.0 - b1);
    s.exp_avg_sq.mul_(b2).addcmul_(g, g, 1.0 - b2);
    if (opt_.name == OptimizerKind::kAdamW) {
      if (wd > 0) s.param.mul_(1.0 - lr * wd);
      at::Tensor denom = (s.exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(opt_.eps);
      s.param.addcdiv_(s.exp_avg, denom, -lr / bc1);
    } else {  // LAMB
      at::Tensor update = (s.exp_avg / bc1) / ((s.exp_avg_sq / bc2).sqrt_().add_(opt_.eps));
      if (wd > 0) update.add_(s.param, wd);
      const double p_norm = s.param.norm().item<double>(), u_norm = update.norm().item<double>();
      const double trust = (p_norm > 0 && u_norm > 0) ? p_norm / u_norm : 1.0;
      s.param.add_(update, -lr * trust);
    }
  }
}

void Optimizer::zero_grad() {
  for (auto& s : slots_)
    if (s.param.grad().defined()) s.param.mutable_grad().zero_();
}

NamedTensors Optimizer::state() const {
  NamedTensors out;
  for (const auto& s : slots_) {
    out.emplace_back("exp_avg." + s.name, s.exp_avg);
    out.emplace_back("exp_avg_sq." + s.name, s.exp_avg_sq);
  }
  return out;
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
