// A watchdog thread for collectives: arm() before a call that needs every rank, disarm() after.
// If it stays armed longer than timeout_s, on_timeout(description) runs on the watchdog thread
// (cst-train logs and calls MPI_Abort there: a peer that died or hangs must not hang the job).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace cst::trainer {

class Watchdog {
 public:
  Watchdog(double timeout_s, std::function<void(const std::string&)> on_timeout);
  ~Watchdog();  // stops and joins the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  void arm(const std::string& what);  // e.g. "all_reduce(loss) at step 12"
  void disarm();

  // RAII arm/disarm.
  class Scope {
   public:
    Scope(Watchdog& w, const std::string& what) : w_(w) { w_.arm(what); }
    ~Scope() { w_.disarm(); }

   private:
    Watchdog& w_;
  };

 private:
  void loop();
  double timeout_s_;
  std::function<void(const std::string&)> on_timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, armed_ = false, fired_ = false;
  std::string what_;
  std::chrono::steady_clock::time_point since_;
  std::thread thread_;
};

}  // namespace cst::trainer
