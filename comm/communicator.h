// The communication seam: one small interface for the collectives data-parallel training needs,
// with a single-process implementation (LocalCommunicator), MPI on CPU tensors
// (MpiCommunicator, comm/mpi_communicator.h) and NCCL on CUDA tensors (NcclCommunicator,
// comm/nccl_communicator.h, built only when CST_WITH_NCCL). Pick one with make_communicator() (comm/factory.h).
//
// Contract of every collective below: every rank of the communicator must call it, in the same
// order, with tensors of the same shape and dtype (and the same root / op). Violations are not
// detected in general; they hang or corrupt (as with MPI and NCCL themselves).
//
// Errors throw cst::Error naming the operation, the byte count, the rank and the host.
// A collective that does not finish in time throws cst::comm::CommTimeout; after that the
// communicator is unusable and the process should MPI_Abort (main() does).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"

namespace cst::comm {

enum class ReduceOp { kSum, kAvg, kMax, kMin };
const char* to_string(ReduceOp op);

// A collective that did not complete within its timeout.
class CommTimeout : public Error {
 public:
  explicit CommTimeout(const std::string& what) : Error(what) {}
};

// Handle of a non-blocking collective. Owned by the caller. Destroying a Work does not cancel
// the collective: it still runs, and the backend keeps the tensor's storage alive until then.
class Work {
 public:
  virtual ~Work() = default;
  // True once the collective has completed (successfully or with an error). Never blocks.
  virtual bool done() = 0;
  // Blocks until complete and rethrows the collective's error, if any. Throws CommTimeout
  // naming op, bytes and rank if not complete within timeout_s (<= 0: wait forever).
  // For CUDA collectives, also makes the caller's current stream wait for the collective.
  virtual void wait(double timeout_s = 0) = 0;
  // Seconds the collective itself ran (from when it started executing, not when it was
  // queued), valid after done(); 0 when the backend cannot tell.
  virtual double elapsed_seconds() const { return 0.0; }
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend() const = 0;  // "local" | "mpi" | "nccl"

  // ---- collectives: every rank must call them, in the same order, same shapes/dtypes ----
  // In place: t becomes the reduction over ranks of t. kAvg needs a floating dtype.
  virtual void all_reduce(at::Tensor& t, ReduceOp op = ReduceOp::kSum) = 0;
  // Non-blocking all_reduce in place. t (a shallow handle; the Work keeps the storage alive)
  // must not be read or written until the Work completes. Collectives issued later on this
  // communicator, blocking or not, run after this one.
  virtual std::unique_ptr<Work> all_reduce_async(at::Tensor t, ReduceOp op = ReduceOp::kSum) = 0;
  // t on rank `root` is copied into t on every other rank.
  virtual void broadcast(at::Tensor& t, int root) = 0;
  // in: any shape; out: [size, in.sizes()...] contiguous, same dtype; out[r] = in of rank r.
  virtual void all_gather(const at::Tensor& in, at::Tensor& out) = 0;
  // The converse of all_gather: in [size, out.sizes()...] contiguous, same dtype; out becomes
  // the reduction over ranks r of (in of rank r)[rank()]. kAvg needs a floating dtype.
  virtual void reduce_scatter(const at::Tensor& in, at::Tensor& out, ReduceOp op = ReduceOp::kSum) = 0;
  // Point-to-point exchange (halos for CST sequence parallelism): sends `send` to rank dst and
  // receives `recv` (contiguous, preallocated) from rank src in one deadlock-free call; dst or
  // src may be -1 for none. Only the ranks named must call it (not a collective), but a rank
  // receiving from src must be matched by src sending to it.
  virtual void send_recv(const at::Tensor& send, int dst, at::Tensor& recv, int src) = 0;
  // Non-blocking all_gather, reduce_scatter and send_recv (same arguments and checks; the tensors
  // are shallow handles and the Work keeps their storage alive): `out` / `recv` must not be read
  // or written, and `in` / `send` not written, until the Work completes. They are ordered with every other operation of
  // this communicator in issue order, as all_reduce_async (operations issued later, blocking or
  // not, run after them), so every rank must issue them in the same order as the rest. The
  // caller must wait() for (or poll until done()) each Work before reading the result; Works may
  // be waited for in any order. Where they progress: MPI on its communication thread (below
  // MPI_THREAD_MULTIPLE they run when their Work is waited for or polled, or before the next
  // operation of this communicator: no overlap, same results); NCCL on the communicator's
  // stream (wait() orders the caller's stream after it); by default, and for LocalCommunicator,
  // at once (the Work is complete when returned).
  virtual std::unique_ptr<Work> all_gather_async(const at::Tensor& in, at::Tensor out);
  virtual std::unique_ptr<Work> reduce_scatter_async(const at::Tensor& in, at::Tensor out,
                                                     ReduceOp op = ReduceOp::kSum);
  virtual std::unique_ptr<Work> send_recv_async(const at::Tensor& send, int dst, at::Tensor recv, int src);
  virtual void barrier() = 0;
  // Collective: the ranks that pass the same color (>= 0) form a new communicator of the same
  // backend, ranked by (key, rank here), as MPI_Comm_split. The result is owned by the caller
  // and independent of this one (its own MPI communicator / NCCL communicator and, for MPI,
  // its own communication thread: collectives on the two may run concurrently, e.g. gradient
  // all-reduces on the world and sequence-parallel exchanges on a group). Either may be
  // destroyed first (the MpiEnvironment must outlive both).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Where the tensors of this communicator's collectives must live: CPU for local and MPI, the
  // bound CUDA device for NCCL (which rejects host tensors).
  virtual c10::Device collective_device() const { return c10::Device(c10::kCPU); }

  // Convenience built on all_reduce for host values (collective): each copies its values to
  // collective_device(), reduces there and returns them on the host (a device sync on CUDA).
  double all_reduce_scalar(double v, ReduceOp op);
  int64_t all_reduce_int(int64_t v, ReduceOp op);
  std::vector<double> all_reduce_doubles(const std::vector<double>& v, ReduceOp op = ReduceOp::kSum);
};

// One rank: every collective has its single-rank meaning (all_reduce of any op = identity,
// broadcast from 0 = no-op, all_gather copies in into out[0], reduce_scatter copies in[0] into
// out, send_recv to/from rank 0 copies, split gives another single-rank communicator).
// Any device and dtype.
class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* backend() const override { return "local"; }
  void all_reduce(at::Tensor& t, ReduceOp op = ReduceOp::kSum) override;
  std::unique_ptr<Work> all_reduce_async(at::Tensor t, ReduceOp op = ReduceOp::kSum) override;
  void broadcast(at::Tensor& t, int root) override;
  void all_gather(const at::Tensor& in, at::Tensor& out) override;
  void reduce_scatter(const at::Tensor& in, at::Tensor& out, ReduceOp op = ReduceOp::kSum) override;
  void send_recv(const at::Tensor& send, int dst, at::Tensor& recv, int src) override;
  void barrier() override {}
  std::unique_ptr<Communicator> split(int color, int key) override;
};

namespace detail {
// Bytes of t's elements (numel * element size).
inline int64_t nbytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }
// "<bytes> bytes of <dtype> <shape>", for error messages.
std::string describe(const at::Tensor& t);
// A Work that is already complete (successfully).
std::unique_ptr<Work> completed_work(double elapsed_seconds = 0.0);
}  // namespace detail

}  // namespace cst::comm
