// MpiCommunicator: the Communicator over MPI, for CPU tensors.
//
// Dtypes: float32, float64, int64, int32, uint8 and bool for every operation; bfloat16 and
// float16 for all_reduce through a float32 copy, and byte-wise for broadcast, all_gather and
// send_recv. bool reduces with logical or (kSum, kMax) and logical and (kMin).
//
// Overlap. OpenMPI makes no progress on a non-blocking collective unless the owning process
// calls into MPI, so MPI_Iallreduce would not overlap with backward. Instead (as Horovod does)
// one background thread runs every collective of this communicator, blocking, from a FIFO
// queue: all_reduce_async enqueues and returns; the blocking calls enqueue and wait, so that
// every collective, whichever thread issued it, runs in issue order. This needs
// MPI_THREAD_MULTIPLE (other code may call MPI on the main thread meanwhile); when
// MpiEnvironment::thread_level() is lower, or Options::comm_thread is false, collectives run on
// the calling thread (rank 0 warns once in the first case), and all_reduce_async (likewise
// all_gather_async, reduce_scatter_async and send_recv_async) is deferred: it runs when its Work is waited for or
// polled, or before the next operation of this communicator, whichever comes first. So the gradient all-reduces that
// GradReducer issues from backward hooks run at finalize(), after backward: never while a peer waits for this rank in
// the exchange of another communicator (a split's sequence-parallel halos), which would deadlock. Tasks and Work
// handles: comm/mpi_tasks.h.
//
// Lifetime: the MpiEnvironment must outlive the communicator. Construction and destruction are
// collective (MPI_Comm_dup / MPI_Comm_free of MPI_COMM_WORLD). Not copyable. Methods may be
// called from any thread, but the order in which ranks issue collectives must be the same.
//
// split() makes a communicator over an MPI_Comm_split of this one, with its own thread and
// queue: its collectives are ordered among themselves, not with this one's, and both threads
// may be inside MPI at once (MPI_THREAD_MULTIPLE; without it both run on their callers'
// threads, and this one's all_reduce_async waits for its Work). Each communicator's collectives
// must be issued in the same order on its ranks.
#pragma once

#include <mpi.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "comm/communicator.h"
#include "comm/mpi.h"

namespace cst::comm {

namespace detail {
struct MpiTaskState;
struct MpiQueue;
}  // namespace detail

class MpiCommunicator : public Communicator {
 public:
  struct Options {
    // Run collectives on a background thread so that all_reduce_async overlaps with compute.
    // false: everything runs on the calling thread (no overlap, no extra thread).
    bool comm_thread = true;
    // Seconds a blocking collective may take before CommTimeout (<= 0: wait forever). After a
    // timeout the communicator refuses further work: abort the job.
    double timeout_s = 600.0;
    // > 0: the background thread runs all-reduces as MPI_Iallreduce + MPI_Test, sleeping this
    // many microseconds between tests, instead of blocking in MPI_Allreduce (which busy-polls
    // a core). Trades all-reduce latency for CPU left to compute on oversubscribed nodes.
    int progress_sleep_us = 0;
  };

  MpiCommunicator(MpiEnvironment& env, Options opts);
  explicit MpiCommunicator(MpiEnvironment& env) : MpiCommunicator(env, Options()) {}
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "mpi"; }
  // True when collectives run on the background thread (all_reduce_async overlaps).
  bool overlapping() const { return threaded_; }

  void all_reduce(at::Tensor& t, ReduceOp op = ReduceOp::kSum) override;
  std::unique_ptr<Work> all_reduce_async(at::Tensor t, ReduceOp op = ReduceOp::kSum) override;
  void broadcast(at::Tensor& t, int root) override;
  void all_gather(const at::Tensor& in, at::Tensor& out) override;
  void reduce_scatter(const at::Tensor& in, at::Tensor& out, ReduceOp op = ReduceOp::kSum) override;
  void send_recv(const at::Tensor& send, int dst, at::Tensor& recv, int src) override;
  // On the communication thread; below MPI_THREAD_MULTIPLE deferred as all_reduce_async.
  std::unique_ptr<Work> all_gather_async(const at::Tensor& in, at::Tensor out) override;
  std::unique_ptr<Work> reduce_scatter_async(const at::Tensor& in, at::Tensor out,
                                             ReduceOp op = ReduceOp::kSum) override;
  std::unique_ptr<Work> send_recv_async(const at::Tensor& send, int dst, at::Tensor recv, int src) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;

  // Shared between the queue and the Work handles (comm/mpi_tasks.h).
  using TaskState = detail::MpiTaskState;
  // What a queued task needs, by value: a task still blocked in MPI when a timed-out
  // communicator is destroyed must not touch the destroyed object.
  struct Ctx {
    MPI_Comm comm = MPI_COMM_NULL;
    int rank = 0, size = 1;
    std::string host;
  };
  using Queue = detail::MpiQueue;  // tasks waiting to run (comm/mpi_tasks.h)

 private:
  // Takes ownership of comm (a duplicate or split that this object frees).
  MpiCommunicator(MpiEnvironment& env, Options opts, MPI_Comm comm);
  // Runs fn (the MPI calls of one operation) in issue order: queued to the background thread,
  // or inline. `op` and `bytes` name the operation in errors and timeouts.
  // deferrable (the *_async operations), without the background thread: queued until its Work is
  // waited for or polled, or a later operation of this communicator runs.
  std::shared_ptr<TaskState> submit(std::string op, int64_t bytes, std::function<void()> fn, bool deferrable = false);
  void run_blocking(std::string op, int64_t bytes, std::function<void()> fn);
  // submit(deferrable) and the Work of the task (which, without the thread, runs the deferred
  // tasks up to it when waited for or polled).
  std::unique_ptr<Work> submit_async(std::string op, int64_t bytes, std::function<void()> fn);
  void check_cpu(const at::Tensor& t, const char* op) const;

  MpiEnvironment& env_;
  Options opts_;
  Ctx ctx_;
  int rank_ = 0, size_ = 1;
  bool threaded_ = false;
  std::shared_ptr<Queue> queue_;  // shared with the worker thread
  std::shared_ptr<bool> stuck_;   // a collective timed out: the worker may never return
  std::thread worker_;
};

}  // namespace cst::comm
