// Autocast scopes that put back the state they found: the state of a forward, captured so that a
// recomputation in backward runs under it (model/recompute.h), and the bfloat16 CUDA autocast
// of training and evaluation steps.
#pragma once

#include <ATen/autocast_mode.h>

#include <optional>

namespace cst::model {

// Autocast on CUDA and CPU: captured in forward, applied around the recomputation.
struct AutocastState {
  bool on[2] = {false, false};
  at::ScalarType dtype[2] = {at::kFloat, at::kFloat};
  static constexpr at::DeviceType kTypes[2] = {at::kCUDA, at::kCPU};

  static AutocastState current() {
    AutocastState s;
    for (int i = 0; i < 2; ++i) {
      s.on[i] = at::autocast::is_autocast_enabled(kTypes[i]);
      s.dtype[i] = at::autocast::get_autocast_dtype(kTypes[i]);
    }
    return s;
  }
  void apply() const {
    for (int i = 0; i < 2; ++i) {
      at::autocast::set_autocast_enabled(kTypes[i], on[i]);
      at::autocast::set_autocast_dtype(kTypes[i], dtype[i]);
    }
  }
  bool any() const { return on[0] || on[1]; }
  // This state with CUDA autocast on, to bfloat16.
  AutocastState with_cuda_bf16() const {
    AutocastState s = *this;
    s.on[0] = true, s.dtype[0] = at::kBFloat16;
    return s;
  }
};

// Sets `s` while in scope, then puts back what was there (and drops casts cached meanwhile).
class AutocastScope {
 public:
  explicit AutocastScope(const AutocastState& s) : saved_(AutocastState::current()), changed_(s.any() || saved_.any()) {
    if (changed_) s.apply();
  }
  ~AutocastScope() {
    if (!changed_) return;
    saved_.apply();
    at::autocast::clear_cache();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  AutocastState saved_;
  bool changed_;
};

// When `on`, CUDA autocast to bfloat16 on the calling thread while in scope; on exit (also during
// unwinding) the previous state is put back and the weight-cast cache cleared. When not `on`,
// nothing. Not copyable.
class Bf16Autocast {
 public:
  explicit Bf16Autocast(bool on) {
    if (on) scope_.emplace(AutocastState::current().with_cuda_bf16());
  }

 private:
  std::optional<AutocastScope> scope_;
};

}  // namespace cst::model
