// The tasks of an MpiCommunicator (comm/mpi_communicator.h): their shared state, the queue the
// background thread runs them from (without it, the queue where all_reduce_async waits until its
// Work is waited for), and their Work handle. Internal to cst_comm.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "comm/communicator.h"

namespace cst::comm::detail {

// MpiTaskState: one operation, shared between the queue and its Work handle.
struct MpiTaskState {
  std::string op;
  int64_t bytes = 0;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;
  double elapsed = 0.0;  // seconds the MPI calls ran
};

// Tasks waiting to run: the worker's queue, or, without the worker, the deferred all-reduces.
struct MpiQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<std::shared_ptr<MpiTaskState>, std::function<void()>>> tasks;
  bool stop = false;
};

// Runs fn (the MPI calls of one operation) and marks s done, with its time and error.
void run_task(MpiTaskState& s, const std::function<void()>& fn);

// Without the worker: runs the queued (deferred) tasks on the calling thread in issue order,
// up to and including `until` (null: all of them).
void run_deferred(MpiQueue& q, const MpiTaskState* until);

// The worker: runs queued tasks in order until stopped and drained (queued collectives always
// run, so that ranks stay matched).
void worker_loop(std::shared_ptr<MpiQueue> q);

// The Work of task s. stuck: set when a wait times out (the communicator is then unusable).
// deferred: the queue the task may still wait in (no worker); wait() and done() run the tasks
// queued before it, and it, on the caller's thread.
std::unique_ptr<Work> make_mpi_work(std::shared_ptr<MpiTaskState> s, std::shared_ptr<bool> stuck, int rank,
                                    std::string host, std::shared_ptr<MpiQueue> deferred = nullptr);

}  // namespace cst::comm::detail
