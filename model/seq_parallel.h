// Sequence parallelism for CST (docs/SEQUENCE_PARALLEL.md): one sequence split over the S ranks
// of a group, each holding a contiguous chunk of whole slices, N/S tokens. Per CSA layer a rank
// needs only the e boundary tokens of its neighbours' projected keys and values (the halo:
// from the left only when causal) and the slice embeddings of every rank (an all-gather of
// n = N/L rows) for global attention. Model code sees only the comm::Communicator interface.
//
// The operations below are collectives of the group: every rank of the group must call them in
// the same order with tensors of the same shape (also in backward, which the autograd engine
// runs in the same order on every rank for the same graph). Tensors live on the group's
// collective_device().
//
// Overlap. Forward exchanges are started (start_halo_exchange, all_gather_seq through a
// SeqGroup) before the work that does not need them and waited for where their result is used:
// the halo of the local input around the chunk's q/k/v projections, the slice all-gather around
// the work handed to it as independent (o_proj(Y_l) in the local-global composition, the
// whole local branch in the parallel one). Started exchanges run on the group communicator in
// issue order (comm::Communicator's *_async contract), the same on every rank, so a started
// one never waits behind one issued later; below MPI_THREAD_MULTIPLE they run when waited for
// (no overlap, same results). In backward the halos' gradients are sent as soon as they exist
// and received where x's gradient is complete; the all-gather's reduce-scatter is started where
// the gathered gradient is complete and waited for where x's gradient is (the backward of the
// gather's independent work runs meanwhile).
// docs/SEQUENCE_PARALLEL.md, "Overlapped exchanges".
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "model/global_range.h"

namespace cst::model {

// Seconds a rank spent blocked on the exchanges of sequence parallelism ("exposed"
// communication: what compute did not hide), accumulated by the operations below that are
// given a SeqGroup. Forward: in the waits of the halo exchange and the all-gather; backward:
// in the reverse exchanges' nodes (backward_s: starting them and waiting for them; one
// backward_exchanges per exchange).
struct ExchangeTimes {
  double halo_wait_s = 0, gather_wait_s = 0, backward_s = 0;
  int64_t halo_waits = 0, gather_waits = 0, backward_exchanges = 0;
  int64_t gathers_overlapped = 0;  // all-gathers that had independent work to run while in flight
  int64_t halo_grads_early = 0;    // backward halo exchanges started before x's gradient was complete
  // The all-gathers' backward reduce-scatters: seconds blocked waiting for them (part of
  // backward_s), how many were started and waited for, and how many were waited for in x's node
  // after the gathered output's node started them (in flight while autograd ran the backward of
  // the gather's independent work; 0 when !SeqGroup::overlap). started - waits: in flight now.
  double gather_grad_wait_s = 0;
  int64_t gather_grads_started = 0, gather_grad_waits = 0, gather_grads_early = 0;
};

// The group as a forward pass over a chunk sees it (SeqChunk::group): the communicator and the
// schedule of its exchanges. Used by one thread at a time. It lives only as long as the
// forward's SeqChunk: what backward keeps is the communicator (`comm`, handed to the operations
// that take one), never the SeqGroup.
struct SeqGroup {
  comm::Communicator* comm = nullptr;  // the S ranks holding the sequence; outlives backward
  // true: an exchange is waited for where its result is first needed, after the independent
  // work; false: where it starts, the independent work after it (the blocking schedule, for
  // measurement; the same operations in the same order, so the same results).
  bool overlap = true;
  std::shared_ptr<ExchangeTimes> times = std::make_shared<ExchangeTimes>();
};

// The halos of this rank's chunk x [B, T, ...] (T >= e) of a sequence split over `group` in
// rank order: left [B, e, ...] holds the last e tokens of rank r-1 (zeros on rank 0) and, when
// `both`, right the first e tokens of rank r+1 (zeros on the last rank; undefined unless both).
// x is returned too, as a new tensor sharing its storage, which the caller must use in place of
// x: backward runs the exchange when x's gradient is computed, so every rank takes part even
// where its halos are unused (rank 0's left). In backward each halo's gradient is sent back to
// its owner and added to the gradient of its boundary tokens. Masks (bool) are exchanged alike.
struct Halo {
  at::Tensor x, left, right;
};

struct HaloGrads;  // the backward exchange of a halo (model/seq_parallel.cpp)

// A halo exchange in flight (start_halo_exchange): x() is available at once (use it in place
// of x from now on, also for the work done while the halos fly); wait() returns the halos.
// Every rank of the group calls wait() once, before reading the halos; the exchange runs in
// issue order with the group's other operations whichever is waited for first (one left
// unwaited still completes).
class PendingHalo {
 public:
  const at::Tensor& x() const { return h_.x; }
  Halo wait();  // blocks until the halos have arrived

 private:
  friend PendingHalo start_halo_exchange(comm::Communicator&, const at::Tensor&, int64_t, bool,
                                         std::shared_ptr<ExchangeTimes>, bool);
  Halo h_;
  std::vector<std::unique_ptr<comm::Work>> works_;
  std::shared_ptr<ExchangeTimes> times_;
  std::shared_ptr<HaloGrads> grads_;  // the backward exchange (floating x)
  bool overlap_backward_ = false;
};

// Starts the exchange of halo_exchange (the same contract, collective over the group in issue
// order); times: where the waits are counted (null: nowhere). overlap_backward: in backward the
// halos' gradients are sent as soon as they exist and received where x's gradient is complete
// (the chunk's projections compute their gradients meanwhile); otherwise both happen there.
PendingHalo start_halo_exchange(comm::Communicator& group, const at::Tensor& x, int64_t e, bool both,
                                std::shared_ptr<ExchangeTimes> times = nullptr, bool overlap_backward = false);
Halo halo_exchange(comm::Communicator& group, const at::Tensor& x, int64_t e, bool both);

// x [B, T, ...] -> [B, S*T, ...]: the chunks of every rank, in rank order. Differentiable: the
// gradient is a reduce-scatter (sum) of the gathered gradient (blocking).
at::Tensor all_gather_seq(comm::Communicator& group, const at::Tensor& x);
// The same, scheduled by `group`: started, `independent` run (when given), then waited for (or,
// when !group.overlap, waited for before `independent`), with the times counted. independent
// is work that needs nothing from this gather: it runs exactly once, on this thread, in the
// caller's grad mode, and may issue exchanges of its own (they queue behind the gather, as on
// every rank). In backward (when group.overlap) the reduce-scatter starts as soon as the
// gathered gradient exists and is waited for where x's gradient is computed, after the
// backward of `independent`'s work.
at::Tensor all_gather_seq(SeqGroup& group, const at::Tensor& x, const std::function<void()>& independent = {});

// x [B, R, ...]: rows [first, first + R) of a sequence of S*chunk rows, computed on this rank ->
// [B, chunk, ...]: this rank's rows [r chunk, (r+1) chunk), each from the rank that computed it.
// The ranks' ranges must be disjoint (they need not tile the sequence: a row no rank computed is
// 0). A zero [B, S*chunk, ...] holding x at its rows, reduce-scattered (sum) over the group: a row
// is one rank's value plus zeros, exact. The transpose of all_gather_seq: backward all-gathers the
// chunks' gradients and takes rows [first, first + R). Moves (S - 1) chunk rows per rank, as
// all_gather_seq does.
at::Tensor rows_to_chunks(comm::Communicator& group, const at::Tensor& x, int64_t first, int64_t chunk);

// What every CSA layer of one forward pass over a rank's chunk needs, made once per forward
// (CstModelImpl) and shared by the layers through LayerContext::sp. The group must outlive it.
struct SeqChunk {
  std::shared_ptr<SeqGroup> group;   // the S ranks holding the sequence
  int64_t first_slice = 0;           // global index of this chunk's first slice
  int64_t local_slices = 0;          // slices of this chunk
  int64_t total_slices = 0;          // slices in the whole sequence, n = N / L
  at::Tensor mask_left, mask_right;  // [B, e] key-mask halos (false beyond the ends);
                                     // undefined when e = 0 (right: also when causal)
  at::Tensor slice_mask_all;         // [B, n] bool: the slice has a real token
  bool masked = true;                // false: the sequence came without a mask (all real)
  // balance_global: causal global attention is split by work over the group where the kernels
  // score only visible pairs: this rank computes query slices [global_first, global_first +
  // global_rows) (balanced_causal_rows with the kernels' cost per row: common/parallel_layout.h,
  // csa::range_row_cost in model/global_range.h) and rows_to_chunks returns them to their
  // owners. The same on every rank (false where the split is the own chunks: one slice per
  // rank, a short sequence, or bidirectional). Setting it to false turns balancing off: each
  // rank its own slices.
  bool balance_global = false;
  int64_t global_first = 0, global_rows = 0;

  // Collective over the group. mask [B, T] bool (this chunk; T = N / S, a multiple of L, as
  // ParallelLayout::token_range asserts); masked: whether the caller passed a mask (the same on
  // every rank); first_token: the chunk's first token in the sequence (token_range(N).begin);
  // row_cost: the global attention kernels' work per query row beyond its pairs
  // (csa::range_row_cost of the device and dropout the forward runs with).
  static SeqChunk make(comm::Communicator& group, const at::Tensor& mask, bool masked, int64_t first_token,
                       int64_t slice_len, int64_t ext, bool causal, int64_t row_cost = csa::kRangeRowCost);
  bool has_left() const { return first_slice > 0; }                             // tokens precede the chunk
  bool has_right() const { return first_slice + local_slices < total_slices; }  // tokens follow it
};

}  // namespace cst::model
