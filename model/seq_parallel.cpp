#include "model/seq_parallel.h"

#include <ATen/ATen.h>
#include <torch/types.h>

#include "comm/communicator.h"
#include "common/error.h"
#include "model/autograd_op.h"

namespace cst::model {
namespace {

using at::Tensor;

// Shape and options of a tensor: what backward needs of the edges it received gradients for,
// without keeping their storage alive.
struct Like {
  std::vector<int64_t> sizes;
  at::TensorOptions options;
  explicit Like(const Tensor& t) : sizes(t.sizes().vec()), options(t.options()) {}
  int64_t width() const {  // trailing elements per token
    int64_t w = 1;
    for (size_t i = 2; i < sizes.size(); ++i) w *= sizes[i];
    return w;
  }
};

std::vector<Like> likes(const std::vector<Tensor>& ts) { return {ts.begin(), ts.end()}; }

// [B, e, C_0 + C_1 + ...] from tensors [B, e, ...]: one message for several tensors.
Tensor pack(const std::vector<Tensor>& parts) {
  std::vector<Tensor> flat;
  for (const Tensor& p : parts) flat.push_back(p.reshape({p.size(0), p.size(1), -1}));
  return flat.size() == 1 ? flat[0].contiguous() : at::cat(flat, -1).contiguous();
}

// The inverse of pack (copies: the results own their storage).
std::vector<Tensor> unpack(const Tensor& packed, const std::vector<Like>& like) {
  std::vector<Tensor> out;
  int64_t off = 0;
  for (const Like& l : like) {
    out.push_back(packed.narrow(-1, off, l.width()).reshape(l.sizes).clone());
    off += l.width();
  }
  return out;
}

// Sends `send` to rank dst and returns what rank src sends (zeros when src < 0), shaped like send.
Tensor shift(comm::Communicator& g, const Tensor& send, int dst, int src) {
  Tensor recv = at::zeros_like(send, at::MemoryFormat::Contiguous);
  g.send_recv(send, dst, recv, src);
  return recv;
}

// grads[from, from + like.size()), undefined ones replaced by zeros.
std::vector<Tensor> or_zeros(const std::vector<Tensor>& grads, size_t from, const std::vector<Like>& like) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < like.size(); ++i) {
    const Tensor& g = grads[from + i];
    out.push_back(g.defined() ? g : at::zeros(like[i].sizes, like[i].options));
  }
  return out;
}

}  // namespace

std::vector<Tensor> halo_exchange(comm::Communicator& group, const std::vector<Tensor>& xs, int64_t e, bool both) {
  CST_CHECK(!xs.empty() && e > 0, "halo_exchange: needs tensors and e > 0");
  const int64_t T = xs[0].size(1);
  CST_CHECK(T >= e, "halo_exchange: the chunk has " << T << " tokens, fewer than the halo e = " << e);
  const int r = group.rank(), S = group.size();
  const int left = r > 0 ? r - 1 : -1, right = r + 1 < S ? r + 1 : -1;
  std::vector<Tensor> right_edges, left_edges;  // my last / first e tokens (views)
  for (const Tensor& x : xs) {
    right_edges.push_back(x.narrow(1, T - e, e));
    if (both) left_edges.push_back(x.narrow(1, 0, e));
  }
  std::vector<Tensor> out;
  {
    torch::NoGradGuard no_grad;
    out = unpack(shift(group, pack(right_edges), right, left), likes(right_edges));  // left halos
    if (both) {
      std::vector<Tensor> rh = unpack(shift(group, pack(left_edges), left, right), likes(left_edges));
      out.insert(out.end(), rh.begin(), rh.end());
    }
  }
  std::vector<Tensor> inputs = right_edges;
  inputs.insert(inputs.end(), left_edges.begin(), left_edges.end());
  const size_t k = xs.size();
  attach_backward(
      "HaloExchangeBackward", inputs, out,
      [&group, left, right, both, k, re = likes(right_edges), le = likes(left_edges)](std::vector<Tensor> grads) {
        // Left halos came from the left neighbour's right edge: their gradient goes back
        // there, and mine arrives from the right. Same for the right halos, mirrored.
        std::vector<Tensor> result = unpack(shift(group, pack(or_zeros(grads, 0, re)), left, right), re);
        if (both) {
          std::vector<Tensor> g = unpack(shift(group, pack(or_zeros(grads, k, le)), right, left), le);
          result.insert(result.end(), g.begin(), g.end());
        }
        return result;
      });
  return out;
}

Tensor all_gather_seq(comm::Communicator& group, const Tensor& x) {
  const int S = group.size();
  std::vector<int64_t> shape = x.sizes().vec();  // [B, T, ...]
  std::vector<Tensor> out(1);
  {
    torch::NoGradGuard no_grad;
    std::vector<int64_t> gshape = shape;
    gshape.insert(gshape.begin(), S);
    Tensor gathered = at::empty(gshape, x.options().memory_format(at::MemoryFormat::Contiguous));
    group.all_gather(x.contiguous(), gathered);  // [S, B, T, ...]
    std::vector<int64_t> oshape = shape;
    oshape[1] *= S;
    out[0] = gathered.movedim(0, 1).reshape(oshape);  // [B, S*T, ...]
  }
  attach_backward("AllGatherSeqBackward", {x}, out, [&group, shape, S, opt = x.options()](std::vector<Tensor> grads) {
    std::vector<int64_t> split = shape;
    split.insert(split.begin() + 1, S);  // [B, S, T, ...]
    Tensor g = grads[0].defined() ? grads[0] : at::zeros(split, opt);
    Tensor in = g.reshape(split).movedim(1, 0).contiguous();  // [S, B, T, ...]
    Tensor mine = at::empty(shape, in.options());
    group.reduce_scatter(in, mine, comm::ReduceOp::kSum);
    return std::vector<Tensor>{mine};
  });
  return out[0];
}

SeqChunk SeqChunk::make(comm::Communicator& group, const Tensor& mask, int64_t slice_len, int64_t ext, bool causal) {
  const int64_t T = mask.size(1);
  CST_CHECK(T % slice_len == 0,
            "sequence parallelism: a rank's chunk of " << T << " tokens is not a multiple of L = " << slice_len);
  torch::NoGradGuard no_grad;
  SeqChunk c;
  c.group = &group;
  const int64_t n_local = T / slice_len;
  c.first_slice = group.rank() * n_local;
  c.total_slices = group.size() * n_local;
  if (ext > 0) {
    std::vector<Tensor> h = halo_exchange(group, {mask}, ext, !causal);
    c.mask_left = h[0];
    if (!causal) c.mask_right = h[1];
  }
  c.slice_mask_all = all_gather_seq(group, mask.reshape({mask.size(0), n_local, slice_len}).any(-1));
  return c;
}

}  // namespace cst::model
