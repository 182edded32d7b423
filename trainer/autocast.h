// bfloat16 autocast for CUDA ops on the calling thread while in scope. No torch in this header.
#pragma once

namespace cst::trainer {

// When `on`, enables CUDA autocast to bfloat16 on construction; on destruction (also during
// unwinding) disables it and clears the autocast weight-cast cache. When not `on`, does
// nothing. Scopes must not overlap on one thread. Not copyable.
class Bf16Autocast {
 public:
  explicit Bf16Autocast(bool on);
  ~Bf16Autocast();
  Bf16Autocast(const Bf16Autocast&) = delete;
  Bf16Autocast& operator=(const Bf16Autocast&) = delete;

 private:
  bool on_;
};

}  // namespace cst::trainer
