#include "trainer/watchdog.h"

#include <sstream>

namespace cst::trainer {

Watchdog::Watchdog(double timeout_s, std::function<void(const std::string&)> on_timeout)
    : timeout_s_(timeout_s), on_timeout_(std::move(on_timeout)), thread_([this] { loop(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watchdog::arm(const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = true;
  what_ = what;
  since_ = std::chrono::steady_clock::now();
}

void Watchdog::disarm() {
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = false;
}

void Watchdog::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(200));
    if (!armed_ || fired_) continue;
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - since_).count();
    if (waited > timeout_s_) {
      fired_ = true;
      std::ostringstream os;
      os << "watchdog: " << what_ << " has not completed after " << waited << " s (dist.comm_timeout_s = " << timeout_s_
         << ")";
      std::string msg = os.str();
      lock.unlock();
      on_timeout_(msg);
      lock.lock();
    }
  }
}

}  // namespace cst::trainer
