// The autocast state of a forward, captured so that a recomputation in backward runs under it
// (activation checkpointing, model/activation_checkpoint.h; selective recomputation,
// model/recompute.h).
#pragma once

#include <ATen/autocast_mode.h>

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

}  // namespace cst::model
