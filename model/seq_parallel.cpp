#include "model/seq_parallel.h"

#include <ATen/ATen.h>
#include <torch/types.h>

#include "comm/communicator.h"
#include "common/error.h"
#include "common/parallel_layout.h"
#include "model/autograd_op.h"
#include "model/global_range.h"

namespace cst::model {
namespace {

using at::Tensor;

// Sends `send` to rank dst and returns what rank src sends (zeros when src < 0), shaped like send.
Tensor shift(comm::Communicator& g, const Tensor& send, int dst, int src) {
  Tensor recv = at::zeros_like(send, at::MemoryFormat::Contiguous);
  g.send_recv(send.contiguous(), dst, recv, src);
  return recv;
}

}  // namespace

Halo halo_exchange(comm::Communicator& group, const Tensor& x, int64_t e, bool both) {
  const int64_t T = x.size(1);
  CST_CHECK(e > 0 && T >= e, "halo_exchange: the chunk has " << T << " tokens, fewer than the halo e = " << e);
  const int r = group.rank(), S = group.size();
  const int left = r > 0 ? r - 1 : -1, right = r + 1 < S ? r + 1 : -1;
  std::vector<Tensor> out(both ? 3 : 2);
  {
    torch::NoGradGuard no_grad;
    out[0] = x.detach();                                        // x itself, with this node as history
    out[1] = shift(group, x.narrow(1, T - e, e), right, left);  // my last tokens go right
    if (both) out[2] = shift(group, x.narrow(1, 0, e), left, right);
  }
  if (at::isFloatingType(x.scalar_type()))
    attach_backward(
        "HaloExchangeBackward", {x}, out,
        [&group, left, right, both, T, e, opt = x.options(), sizes = x.sizes().vec()](std::vector<Tensor> grads) {
          Tensor g = grads[0].defined() ? grads[0].clone() : at::zeros(sizes, opt);
          auto grad_of = [&](size_t i) { return grads[i].defined() ? grads[i] : at::zeros_like(g.narrow(1, 0, e)); };
          // The left halo came from the left neighbour's last tokens: its gradient goes
          // back there, and the gradient of my last tokens comes from the right.
          g.narrow(1, T - e, e).add_(shift(group, grad_of(1), left, right));
          if (both) g.narrow(1, 0, e).add_(shift(group, grad_of(2), right, left));
          return std::vector<Tensor>{g};
        });
  Halo h;
  h.x = out[0], h.left = out[1];
  if (both) h.right = out[2];
  return h;
}

namespace {

// x [B, T, ...] of every rank -> [B, S*T, ...] in rank order (no autograd).
Tensor gather_chunks(comm::Communicator& group, const Tensor& x) {
  const int S = group.size();
  std::vector<int64_t> shape = x.sizes().vec();  // [B, T, ...]
  shape.insert(shape.begin(), S);
  Tensor gathered = at::empty(shape, x.options().memory_format(at::MemoryFormat::Contiguous));
  group.all_gather(x.contiguous(), gathered);  // [S, B, T, ...]
  shape.erase(shape.begin());
  shape[1] *= S;
  return gathered.movedim(0, 1).reshape(shape);  // [B, S*T, ...]
}

// y [B, S*T, ...] of every rank -> [B, T, ...]: rank r's chunk of their sum (no autograd).
Tensor sum_chunks(comm::Communicator& group, const Tensor& y) {
  const int S = group.size();
  std::vector<int64_t> split = y.sizes().vec();
  split[1] /= S;
  std::vector<int64_t> mine_shape = split;
  split.insert(split.begin() + 1, S);                       // [B, S, T, ...]
  Tensor in = y.reshape(split).movedim(1, 0).contiguous();  // [S, B, T, ...]
  Tensor mine = at::empty(mine_shape, in.options());
  group.reduce_scatter(in, mine, comm::ReduceOp::kSum);
  return mine;
}

}  // namespace

Tensor all_gather_seq(comm::Communicator& group, const Tensor& x) {
  std::vector<Tensor> out(1);
  {
    torch::NoGradGuard no_grad;
    out[0] = gather_chunks(group, x);
  }
  attach_backward(
      "AllGatherSeqBackward", {x}, out,
      [&group, shape = out[0].sizes().vec(), opt = x.options()](std::vector<Tensor> grads) {
        return std::vector<Tensor>{sum_chunks(group, grads[0].defined() ? grads[0] : at::zeros(shape, opt))};
      });
  return out[0];
}

Tensor rows_to_chunks(comm::Communicator& group, const Tensor& x, int64_t first, int64_t chunk) {
  const int64_t rows = x.size(1), total = chunk * group.size();
  CST_CHECK(first >= 0 && first + rows <= total,
            "rows_to_chunks: rows [" << first << ", " << first + rows << ") outside the " << total << " of the group");
  std::vector<Tensor> out(1);
  {
    torch::NoGradGuard no_grad;
    std::vector<int64_t> shape = x.sizes().vec();
    shape[1] = total;
    Tensor all = at::zeros(shape, x.options().memory_format(at::MemoryFormat::Contiguous));
    all.narrow(1, first, rows).copy_(x);
    out[0] = sum_chunks(group, all);
  }
  attach_backward("RowsToChunksBackward", {x}, out,
                  [&group, first, rows, shape = out[0].sizes().vec(), opt = x.options()](std::vector<Tensor> grads) {
                    const Tensor g = grads[0].defined() ? grads[0] : at::zeros(shape, opt);
                    return std::vector<Tensor>{gather_chunks(group, g).narrow(1, first, rows)};
                  });
  return out[0];
}

SeqChunk SeqChunk::make(comm::Communicator& group, const Tensor& mask, bool masked, int64_t first_token,
                        int64_t slice_len, int64_t ext, bool causal) {
  torch::NoGradGuard no_grad;
  SeqChunk c;
  c.group = &group;
  c.masked = masked;
  const int64_t n_local = mask.size(1) / slice_len;
  c.first_slice = first_token / slice_len;
  c.local_slices = n_local;
  c.total_slices = group.size() * n_local;
  if (ext > 0) {
    const Halo h = halo_exchange(group, mask, ext, !causal);
    c.mask_left = h.left;
    c.mask_right = h.right;
  }
  for (int j = 0; causal && j < group.size(); ++j) {  // every rank's split, so that all decide alike
    const TokenRange rows = balanced_causal_rows(c.total_slices, group.size(), j, csa::kRangeRowCost);
    if (rows.begin != j * n_local || rows.end != (j + 1) * n_local) c.balance_global = true;
    if (j == group.rank()) c.global_first = rows.begin, c.global_rows = rows.size();
  }
  c.slice_mask_all = all_gather_seq(group, mask.reshape({mask.size(0), n_local, slice_len}).any(-1));
  return c;
}

}  // namespace cst::model
