// Measures CPU tensor memory while in scope: current, peak and the largest single allocation
// made through c10's CPU allocator by this thread (and autograd work it starts). Used by tests
// ("no N x N tensor") and benchmarks (peak memory). Not for CUDA: use the caching allocator's
// stats there. Only one tracker per thread at a time; not copyable.
#pragma once

#include <cstdint>
#include <memory>

namespace cst::model {

class MemoryTracker {
 public:
  MemoryTracker();   // starts tracking (installs a c10 memory reporter on this thread)
  ~MemoryTracker();  // stops tracking
  MemoryTracker(const MemoryTracker&) = delete;
  MemoryTracker& operator=(const MemoryTracker&) = delete;

  int64_t current_bytes() const;  // allocated since construction minus freed
  int64_t peak_bytes() const;     // max of current_bytes() over the scope
  int64_t largest_alloc_bytes() const;
  int64_t num_allocs() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
  struct Guard;
  std::unique_ptr<Guard> guard_;
};

}  // namespace cst::model
