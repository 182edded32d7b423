// NcclCommunicator: the Communicator over NCCL, for CUDA tensors. Built only when CST_WITH_NCCL
// (a CUDA LibTorch and NCCL were found); include it only under #ifdef CST_WITH_NCCL.
//
// One rank per GPU. Rank 0 makes the ncclUniqueId and broadcasts it over MPI_COMM_WORLD; the
// NCCL communicator spans the same ranks as MPI_COMM_WORLD, on the CUDA device current at
// construction (or `device`).
//
// Streams. Collectives run on a side stream of this communicator. Each collective first makes
// the side stream wait (event) for the caller's current torch stream, so it sees the tensor's
// pending writes; the blocking collectives then make the current stream wait for the side
// stream before returning (no host synchronisation), and all_reduce_async's Work::wait() does so
// (after waiting on the host, with the timeout, for the collective to finish). Tensors are
// recorded on the side stream for the caching allocator. Dtypes: float32, float64, float16,
// bfloat16 (native), int64, int32, uint8, bool (as uint8; kSum and kMax are logical or).
//
// Lifetime: the MpiEnvironment must outlive it. Construction is collective over
// MPI_COMM_WORLD. Not copyable.
//
// split(): an MPI_Comm_split of this communicator's MPI twin (for ranks and sizes), then
// ncclCommSplit (NCCL >= 2.18) or, with older NCCL, a new unique id broadcast over the MPI
// split and ncclCommInitRank. Same device; its own side stream.
#pragma once

#ifdef CST_WITH_NCCL

#include <nccl.h>

#include <memory>
#include <string>

#include "comm/communicator.h"
#include "comm/mpi.h"

namespace cst::comm {

class NcclCommunicator : public Communicator {
 public:
  // device < 0: the current CUDA device. timeout_s bounds blocking collectives (<= 0: none).
  NcclCommunicator(MpiEnvironment& env, int device = -1, double timeout_s = 600.0);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  // Whether this process sees a CUDA device (false on CPU-only machines; never throws).
  static bool cuda_available();

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "nccl"; }
  int device() const { return device_; }
  c10::Device collective_device() const override { return c10::Device(c10::kCUDA, device_); }

  void all_reduce(at::Tensor& t, ReduceOp op = ReduceOp::kSum) override;
  std::unique_ptr<Work> all_reduce_async(at::Tensor t, ReduceOp op = ReduceOp::kSum) override;
  void broadcast(at::Tensor& t, int root) override;
  void all_gather(const at::Tensor& in, at::Tensor& out) override;
  void reduce_scatter(const at::Tensor& in, at::Tensor& out, ReduceOp op = ReduceOp::kSum) override;
  void send_recv(const at::Tensor& send, int dst, at::Tensor& recv, int src) override;
  // On the communicator's side stream, after the caller's current stream's work so far.
  std::unique_ptr<Work> all_gather_async(const at::Tensor& in, at::Tensor out) override;
  std::unique_ptr<Work> reduce_scatter_async(const at::Tensor& in, at::Tensor out,
                                             ReduceOp op = ReduceOp::kSum) override;
  std::unique_ptr<Work> send_recv_async(const at::Tensor& send, int dst, at::Tensor recv, int src) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;

  struct Impl;  // CUDA types stay out of this header

 private:
  // A split of `parent` (color, key) over `mpi_comm` (the MPI split, owned from now on).
  NcclCommunicator(MpiEnvironment& env, MPI_Comm mpi_comm, const NcclCommunicator& parent, int color, int key);

  MpiEnvironment& env_;
  int rank_ = 0, size_ = 1, device_ = 0;
  double timeout_s_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cst::comm

#endif  // CST_WITH_NCCL
