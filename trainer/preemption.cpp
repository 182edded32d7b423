#include "trainer/preemption.h"

#include <atomic>
#include <csignal>
#include <initializer_list>

namespace cst::trainer {
namespace {
std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal flag must be lock-free");

extern "C" void on_preemption_signal(int sig) {
  int seen = g_signal.load(std::memory_order_relaxed);
  while (sig > seen && !g_signal.compare_exchange_weak(seen, sig, std::memory_order_relaxed)) {
  }
}
}  // namespace

void install_preemption_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_preemption_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) sigaction(sig, &sa, nullptr);
}

int pending_signal() { return g_signal.load(std::memory_order_relaxed); }
void clear_pending_signal() { g_signal.store(0, std::memory_order_relaxed); }

}  // namespace cst::trainer
