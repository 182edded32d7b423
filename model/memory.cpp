#include "model/memory.h"

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include <algorithm>
#include <mutex>

namespace cst::model {

struct MemoryTracker::State : public c10::MemoryReportingInfoBase {
  mutable std::mutex mu;
  int64_t current = 0, peak = 0, largest = 0, allocs = 0;

  void reportMemoryUsage(void*, int64_t alloc_size, size_t, size_t, c10::Device device) override {
    if (!device.is_cpu()) return;
    std::lock_guard<std::mutex> lock(mu);
    current += alloc_size;
    if (alloc_size > 0) {
      ++allocs;
      largest = std::max(largest, alloc_size);
    }
    peak = std::max(peak, current);
  }
  bool memoryProfilingEnabled() const override { return true; }
};

struct MemoryTracker::Guard {
  explicit Guard(std::shared_ptr<State> s) : g(c10::DebugInfoKind::PROFILER_STATE, std::move(s)) {}
  c10::DebugInfoGuard g;
};

MemoryTracker::MemoryTracker() : state_(std::make_shared<State>()), guard_(std::make_unique<Guard>(state_)) {}
MemoryTracker::~MemoryTracker() = default;

int64_t MemoryTracker::current_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->current;
}
int64_t MemoryTracker::peak_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->peak;
}
int64_t MemoryTracker::largest_alloc_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->largest;
}
int64_t MemoryTracker::num_allocs() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->allocs;
}

}  // namespace cst::model
