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

// Halos of a sequence split over `group` in rank order. xs: tensors [B, T, ...] (same B, T,
// dtype, device; T >= e), exchanged in one message per direction. Returns, per x, its left
// halo [B, e, ...]: the last e tokens of rank r-1 (zeros on rank 0), then, when `both`, per x
// its right halo: the first e tokens of rank r+1 (zeros on the last rank). Differentiable: in
// backward, a halo's gradient is sent back to its owner and added to its boundary tokens'.
std::vector<at::Tensor> halo_exchange(comm::Communicator& group, const std::vector<at::Tensor>& xs, int64_t e,
                                      bool both);

// x [B, T, ...] -> [B, S*T, ...]: the chunks of every rank, in rank order. Differentiable: the
// gradient is a reduce-scatter (sum) of the gathered gradient.
at::Tensor all_gather_seq(comm::Communicator& group, const at::Tensor& x);

// What every CSA layer of one forward pass over a rank's chunk needs, made once per forward
// (CstModelImpl) and shared by the layers through LayerContext::sp. The group must outlive it.
struct SeqChunk {
  comm::Communicator* group = nullptr;  // the S ranks holding the sequence; this one = rank()
  int64_t first_slice = 0;              // global index of this chunk's first slice
  int64_t total_slices = 0;             // slices in the whole sequence, n = N / L
  at::Tensor mask_left, mask_right;     // [B, e] key-mask halos (false beyond the ends);
                                        // undefined when e = 0 (right: also when causal)
  at::Tensor slice_mask_all;            // [B, n] bool: the slice has a real token

  // Collective over the group. mask [B, T] bool (this chunk; T = N / S, a multiple of L).
  static SeqChunk make(comm::Communicator& group, const at::Tensor& mask, int64_t slice_len, int64_t ext, bool causal);
};

}  // namespace cst::model
