#include "trainer/op_profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

namespace cst::trainer {
namespace {

namespace prof = torch::autograd::profiler;
namespace impl = torch::profiler::impl;
constexpr uint8_t kCpuOp = 0;  // libkineto::ActivityType::CPU_OP: an operator run on the CPU

std::vector<OpTime> sorted(const std::map<std::string, OpTime>& by_name, double* total) {
  std::vector<OpTime> out;
  *total = 0;
  for (const auto& [name, t] : by_name) out.push_back(t), *total += t.ms;
  std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.ms > b.ms; });
  return out;
}

}  // namespace

OpProfile profile_ops(const std::function<void()>& fn, bool cuda) {
  impl::ProfilerConfig config(impl::ProfilerState::KINETO);
  std::set<impl::ActivityType> activities{impl::ActivityType::CPU};
  if (cuda) activities.insert(impl::ActivityType::CUDA);
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  try {
    fn();
  } catch (...) {
    prof::disableProfiler();
    throw;
  }
  std::unique_ptr<prof::ProfilerResult> result = prof::disableProfiler();

  // CPU operators: per thread, intervals nest; self = own duration - direct children's.
  struct Span {
    uint64_t start, end;
    std::string name;
  };
  std::map<uint64_t, std::vector<Span>> by_thread;
  std::map<std::string, OpTime> cpu, gpu;
  for (const auto& e : result->events()) {
    if (e.deviceType() == c10::DeviceType::CUDA) {
      OpTime& t = gpu[e.name().substr(0, 90)];
      t.name = e.name().substr(0, 90), t.ms += static_cast<double>(e.durationNs()) / 1e6, ++t.calls;
    } else if (e.activityType() == kCpuOp) {
      by_thread[e.startThreadId()].push_back({e.startNs(), e.endNs(), e.name()});
    }
  }
  for (auto& [tid, spans] : by_thread) {
    std::sort(spans.begin(), spans.end(),
              [](const Span& a, const Span& b) { return a.start != b.start ? a.start < b.start : a.end > b.end; });
    std::vector<std::pair<const Span*, double>> stack;  // open spans and their children's time
    auto close = [&](uint64_t upto) {
      while (!stack.empty() && stack.back().first->end <= upto) {
        auto [s, child] = stack.back();
        stack.pop_back();
        const double dur = static_cast<double>(s->end - s->start) / 1e6;
        OpTime& t = cpu[s->name];
        t.name = s->name, t.ms += dur - child, ++t.calls;
        if (!stack.empty()) stack.back().second += dur;
      }
    };
    for (const Span& s : spans) {
      close(s.start);
      stack.push_back({&s, 0.0});
    }
    close(UINT64_MAX);
  }
  OpProfile out;
  out.cpu = sorted(cpu, &out.cpu_ms);
  out.cuda = sorted(gpu, &out.cuda_ms);
  return out;
}

std::string OpProfile::table(size_t top) const {
  std::string s;
  char line[256];
  auto list = [&](const char* what, const std::vector<OpTime>& rows, double total) {
    if (rows.empty()) return;
    std::snprintf(line, sizeof(line), "| %s (total %.1f ms) | ms | share | calls |\n|---|---|---|---|\n", what, total);
    s += line;
    for (size_t i = 0; i < std::min(top, rows.size()); ++i) {
      std::snprintf(line, sizeof(line), "| %s | %.2f | %.1f%% | %ld |\n", rows[i].name.c_str(), rows[i].ms,
                    100.0 * rows[i].ms / std::max(total, 1e-12), static_cast<long>(rows[i].calls));
      s += line;
    }
  };
  list("CPU operator, self time", cpu, cpu_ms);
  list("CUDA kernel", cuda, cuda_ms);
  return s;
}

namespace {
double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

PhaseTimer::PhaseTimer(std::function<void()> sync) : enabled_(true), sync_(std::move(sync)) {
  if (sync_) sync_();
  last_ = now_s();
}

void PhaseTimer::mark(const char* phase) {
  if (!enabled_) return;
  if (sync_) sync_();
  const double t = now_s();
  auto it = std::find_if(phases_.begin(), phases_.end(), [&](const OpTime& p) { return p.name == phase; });
  if (it == phases_.end()) it = phases_.insert(phases_.end(), OpTime{phase, 0.0, 0});
  it->ms += (t - last_) * 1e3, ++it->calls;
  last_ = t;
}

double PhaseTimer::total_ms() const {
  double total = 0;
  for (const OpTime& p : phases_) total += p.ms;
  return total;
}

std::string PhaseTimer::table() const {
  const double total = total_ms();
  std::string s = "| phase | ms | share | marks |\n|---|---|---|---|\n";
  char row[256];
  for (const OpTime& p : phases_) {
    std::snprintf(row, sizeof(row), "| %s | %.2f | %.1f%% | %ld |\n", p.name.c_str(), p.ms,
                  100.0 * p.ms / std::max(total, 1e-12), static_cast<long>(p.calls));
    s += row;
  }
  std::snprintf(row, sizeof(row), "| total | %.2f | 100%% | |\n", total);
  return s + row;
}

std::string PhaseTimer::line() const {
  const double total = total_ms();
  std::string s;
  char part[256];
  for (const OpTime& p : phases_) {
    std::snprintf(part, sizeof(part), "%s%s %.1f ms (%.1f%%)", s.empty() ? "" : ", ", p.name.c_str(), p.ms,
                  100.0 * p.ms / std::max(total, 1e-12));
    s += part;
  }
  return s;
}

}  // namespace cst::trainer
