#include "comm/mpi_tasks.h"

#include <unistd.h>

#include <chrono>
#include <sstream>

#include "common/error.h"

namespace cst::comm::detail {
namespace {

using Clock = std::chrono::steady_clock;

class MpiWork : public Work {
 public:
  MpiWork(std::shared_ptr<MpiTaskState> s, std::shared_ptr<bool> stuck, int rank, std::string host,
          std::shared_ptr<MpiQueue> deferred = nullptr)
      : s_(std::move(s)),
        stuck_(std::move(stuck)),
        rank_(rank),
        host_(std::move(host)),
        deferred_(std::move(deferred)) {}

  bool done() override {
    run_if_deferred();
    std::lock_guard<std::mutex> lk(s_->mu);
    return s_->done;
  }

  void wait(double timeout_s) override {
    run_if_deferred();
    std::unique_lock<std::mutex> lk(s_->mu);
    if (timeout_s <= 0) {
      s_->cv.wait(lk, [&] { return s_->done; });
    } else if (!s_->cv.wait_for(lk, std::chrono::duration<double>(timeout_s), [&] { return s_->done; })) {
      *stuck_ = true;
      std::ostringstream os;
      os << "MPI " << s_->op << " of " << s_->bytes << " bytes did not complete within " << timeout_s << " s on rank "
         << rank_ << " (host " << host_ << ", pid " << getpid()
         << "): a peer is slow, hung or dead; the communicator is now unusable, abort the job";
      throw CommTimeout(os.str());
    }
    if (s_->error) std::rethrow_exception(s_->error);
  }

  double elapsed_seconds() const override {
    std::lock_guard<std::mutex> lk(s_->mu);
    return s_->elapsed;
  }

 private:
  void run_if_deferred() {
    if (!deferred_) return;
    {
      std::lock_guard<std::mutex> lk(s_->mu);
      if (s_->done) return;
    }
    run_deferred(*deferred_, s_.get());
  }

  std::shared_ptr<MpiTaskState> s_;
  std::shared_ptr<bool> stuck_;
  int rank_;
  std::string host_;
  std::shared_ptr<MpiQueue> deferred_;
};

}  // namespace

void run_task(MpiTaskState& s, const std::function<void()>& fn) {
  auto t0 = Clock::now();
  std::exception_ptr err;
  try {
    fn();
  } catch (...) {
    err = std::current_exception();
  }
  double dt = std::chrono::duration<double>(Clock::now() - t0).count();
  {
    std::lock_guard<std::mutex> lk(s.mu);
    s.done = true;
    s.error = err;
    s.elapsed = dt;
  }
  s.cv.notify_all();
}

void run_deferred(MpiQueue& q, const MpiTaskState* until) {
  for (;;) {
    std::pair<std::shared_ptr<MpiTaskState>, std::function<void()>> task;
    {
      std::lock_guard<std::mutex> lk(q.mu);
      if (q.tasks.empty()) return;
      task = std::move(q.tasks.front());
      q.tasks.pop_front();
    }
    run_task(*task.first, task.second);
    if (task.first.get() == until) return;
  }
}

void worker_loop(std::shared_ptr<MpiQueue> q) {
  for (;;) {
    std::pair<std::shared_ptr<MpiTaskState>, std::function<void()>> task;
    {
      std::unique_lock<std::mutex> lk(q->mu);
      q->cv.wait(lk, [&] { return q->stop || !q->tasks.empty(); });
      if (q->tasks.empty()) return;
      task = std::move(q->tasks.front());
      q->tasks.pop_front();
    }
    run_task(*task.first, task.second);
  }
}

std::unique_ptr<Work> make_mpi_work(std::shared_ptr<MpiTaskState> s, std::shared_ptr<bool> stuck, int rank,
                                    std::string host, std::shared_ptr<MpiQueue> deferred) {
  return std::make_unique<MpiWork>(std::move(s), std::move(stuck), rank, std::move(host), std::move(deferred));
}

}  // namespace cst::comm::detail
