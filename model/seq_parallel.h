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
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace cst::comm {
class Communicator;
}

namespace cst::model {

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
Halo halo_exchange(comm::Communicator& group, const at::Tensor& x, int64_t e, bool both);

// x [B, T, ...] -> [B, S*T, ...]: the chunks of every rank, in rank order. Differentiable: the
// gradient is a reduce-scatter (sum) of the gathered gradient.
at::Tensor all_gather_seq(comm::Communicator& group, const at::Tensor& x);

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
  comm::Communicator* group = nullptr;  // the S ranks holding the sequence
  int64_t first_slice = 0;              // global index of this chunk's first slice
  int64_t local_slices = 0;             // slices of this chunk
  int64_t total_slices = 0;             // slices in the whole sequence, n = N / L
  at::Tensor mask_left, mask_right;     // [B, e] key-mask halos (false beyond the ends);
                                        // undefined when e = 0 (right: also when causal)
  at::Tensor slice_mask_all;            // [B, n] bool: the slice has a real token
  bool masked = true;                   // false: the sequence came without a mask (all real)
  // balance_global: causal global attention is split by work over the group where the kernels
  // score only visible pairs: this rank computes query slices [global_first, global_first +
  // global_rows) (balanced_causal_rows with csa::kRangeRowCost: common/parallel_layout.h,
  // model/global_range.h) and rows_to_chunks returns them to their owners. The same on every
  // rank (false where the split is the own chunks: one slice per rank, a short sequence, or
  // bidirectional). Setting it to false turns balancing off: each rank its own slices.
  bool balance_global = false;
  int64_t global_first = 0, global_rows = 0;

  // Collective over the group. mask [B, T] bool (this chunk; T = N / S, a multiple of L, as
  // ParallelLayout::token_range asserts); masked: whether the caller passed a mask (the same on
  // every rank); first_token: the chunk's first token in the sequence (token_range(N).begin).
  static SeqChunk make(comm::Communicator& group, const at::Tensor& mask, bool masked, int64_t first_token,
                       int64_t slice_len, int64_t ext, bool causal);
  bool has_left() const { return first_slice > 0; }                             // tokens precede the chunk
  bool has_right() const { return first_slice + local_slices < total_slices; }  // tokens follow it
};

}  // namespace cst::model
