#include "model/seq_parallel.h"

#include <ATen/ATen.h>
#include <torch/types.h>

#include <chrono>

#include "common/error.h"
#include "common/parallel_layout.h"
#include "model/autograd_op.h"
#include "model/global_range.h"

namespace cst::model {
namespace {

using at::Tensor;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Adds the seconds since t0 to a backward counter of `times` (if any).
void count_backward(const std::shared_ptr<ExchangeTimes>& times, Clock::time_point t0) {
  if (!times) return;
  times->backward_s += seconds_since(t0);
  ++times->backward_exchanges;
}

// The backward of one all-gather, split over two nodes as HaloGrads is. The gathered output's
// node (AllGatherSeqBackward, attached when the gather is finished, after its independent work)
// starts the reduce-scatter of the gathered gradient and returns; x's node
// (AllGatherSeqWait, attached on x when the gather starts, before that work) waits for it and
// returns this rank's chunk as x's gradient. x's node runs after the output's (it receives the
// output's, empty, gradient of x). The engine runs ready nodes by decreasing sequence number, so
// in between it runs what is ready of the nodes created between the two: the independent
// work's backward (the parallel composition's local branch, o_proj(Y_l) in local-global), while
// the reduce-scatter is in flight. When !overlap the output's node waits at once (blocking
// schedule): the same nodes, operations and additions, so bitwise the same gradients.
//
// Order of the group's operations. Every rank builds the same graph (the same exchanges, shapes
// aside) and the engine runs it in the same order, so every rank issues this reduce-scatter at
// the same point: after the operations of the nodes created after the gather's wait (global
// attention, rows_to_chunks, later layers), before those of the independent work (its halos'
// gradients). The group runs its operations in issue order; x's node waits only for an
// operation every rank issued before anything it waits for itself, and no rank blocks in a world
// collective meanwhile (GradReducer's all-reduces run on the world's communication thread, or
// below MPI_THREAD_MULTIPLE are deferred to finalize(), after backward). Below
// MPI_THREAD_MULTIPLE the reduce-scatter is deferred until x's node waits (or the next group
// operation runs): no overlap, same results.
struct GatherGrads {
  comm::Communicator* group = nullptr;
  bool overlap = false;
  std::shared_ptr<ExchangeTimes> times;
  std::vector<int64_t> shape;        // x: [B, T, ...]
  at::TensorOptions options;         // x's
  Tensor mine;                       // [B, T, ...]: this rank's chunk of the summed gradient
  std::unique_ptr<comm::Work> work;  // the reduce-scatter, until waited for

  void start(const Tensor& grad) {  // grad: [S, B, T, ...] or undefined (zeros)
    std::vector<int64_t> gshape = shape;
    gshape.insert(gshape.begin(), group->size());
    Tensor in = grad.defined() ? grad.contiguous() : at::zeros(gshape, options);
    mine = at::empty(shape, in.options());
    work = group->reduce_scatter_async(in, mine, comm::ReduceOp::kSum);
    if (times) ++times->gather_grads_started;
  }
  void wait() {
    if (!work) return;
    const auto t0 = Clock::now();
    work->wait();
    work.reset();
    if (!times) return;
    times->gather_grad_wait_s += seconds_since(t0);
    ++times->gather_grad_waits;
  }
};

// A gather in flight: the raw [S, B, T, ...] buffer (the output of the autograd node once
// finished) and its Work; x as the output of x's backward node (the input of the output's).
struct Gather {
  Tensor gathered, through;
  std::unique_ptr<comm::Work> work;
  std::vector<int64_t> out_shape;  // [B, S*T, ...]
  std::shared_ptr<GatherGrads> grads;
};

// Starts the all-gather of x and attaches x's backward node. overlap: the reduce-scatter of the
// gradient is waited for in x's node (else where it starts).
Gather start_gather(comm::Communicator& group, const Tensor& x, std::shared_ptr<ExchangeTimes> times, bool overlap) {
  const int S = group.size();
  std::vector<int64_t> shape = x.sizes().vec();  // [B, T, ...]
  Gather g;
  std::vector<Tensor> through(1);
  {
    torch::NoGradGuard no_grad;
    std::vector<int64_t> gshape = shape;
    gshape.insert(gshape.begin(), S);
    g.gathered = at::empty(gshape, x.options().memory_format(at::MemoryFormat::Contiguous));
    g.work = group.all_gather_async(x.contiguous(), g.gathered);  // [S, B, T, ...]
    through[0] = x.detach();                                      // x itself, with x's node as history
  }
  auto st = std::make_shared<GatherGrads>();
  st->group = &group, st->overlap = overlap, st->times = times, st->shape = shape, st->options = x.options();
  attach_backward("AllGatherSeqWait", {x}, through, [st](std::vector<Tensor> grads) {
    const auto t0 = Clock::now();
    const bool early = st->work != nullptr;
    st->wait();
    Tensor g = st->mine;
    if (grads[0].defined()) g = g.defined() ? g + grads[0] : grads[0];
    st->mine = Tensor();
    count_backward(st->times, t0);
    if (early && st->times) ++st->times->gather_grads_early;
    return std::vector<Tensor>{g};
  });
  g.through = through[0];
  g.grads = st;
  g.out_shape = shape;
  g.out_shape[1] *= S;
  return g;
}

// After the gather's wait: the output's backward node, then [B, S*T, ...]. The node's output is
// the receive buffer: autograd never reads it.
Tensor finish_gather(Gather& g) {
  std::vector<Tensor> out{g.gathered};
  attach_backward("AllGatherSeqBackward", {g.through}, out, [st = g.grads](std::vector<Tensor> grads) {
    const auto t0 = Clock::now();
    st->start(grads[0]);
    if (!st->overlap) st->wait();
    if (st->times) st->times->backward_s += seconds_since(t0);
    return std::vector<Tensor>{Tensor()};
  });
  return out[0].movedim(0, 1).reshape(g.out_shape);  // [B, S*T, ...]
}

}  // namespace

// The reverse exchange of one halo exchange in backward: the halos' gradients go back to their
// owners, the gradients of this rank's boundary tokens arrive. The halos' node (attached at
// wait) stashes their gradients and, when overlapping, starts it; x's node (attached at start,
// which runs after the halos' node whenever that one runs: it receives x's gradient through it)
// starts it if nobody has (the halos got no gradient: rank 0's left), waits and adds.
struct HaloGrads {
  comm::Communicator* group = nullptr;
  int left = -1, right = -1;
  bool both = false, started = false;
  Tensor grad_left, grad_right;  // the halos' gradients (undefined: none)
  Tensor from_right, from_left;  // the gradients of my last / first e tokens
  std::vector<std::unique_ptr<comm::Work>> works;

  void start(const Tensor& like) {  // like: [B, e, ...]
    auto send = [&](const Tensor& g) { return (g.defined() ? g : at::zeros_like(like)).contiguous(); };
    // The left halo came from the left neighbour's last tokens: its gradient goes back there,
    // and the gradient of my last tokens comes from the right.
    from_right = at::zeros_like(like, at::MemoryFormat::Contiguous);
    works.push_back(group->send_recv_async(send(grad_left), left, from_right, right));
    if (both) {
      from_left = at::zeros_like(like, at::MemoryFormat::Contiguous);
      works.push_back(group->send_recv_async(send(grad_right), right, from_left, left));
    }
    started = true;
  }
};

PendingHalo start_halo_exchange(comm::Communicator& group, const Tensor& x, int64_t e, bool both,
                                std::shared_ptr<ExchangeTimes> times, bool overlap_backward) {
  const int64_t T = x.size(1);
  CST_CHECK(e > 0 && T >= e, "halo_exchange: the chunk has " << T << " tokens, fewer than the halo e = " << e);
  const int r = group.rank(), S = group.size();
  const int left = r > 0 ? r - 1 : -1, right = r + 1 < S ? r + 1 : -1;
  PendingHalo p;
  p.times_ = times;
  p.overlap_backward_ = overlap_backward;
  std::vector<Tensor> out(1);
  {
    torch::NoGradGuard no_grad;
    out[0] = x.detach();  // x itself, with this node as history
    auto start = [&](const Tensor& send, int dst, int src) {
      Tensor recv = at::zeros_like(send, at::MemoryFormat::Contiguous);
      p.works_.push_back(group.send_recv_async(send.contiguous(), dst, recv, src));
      return recv;
    };
    p.h_.left = start(x.narrow(1, T - e, e), right, left);  // my last tokens go right
    if (both) p.h_.right = start(x.narrow(1, 0, e), left, right);
  }
  if (at::isFloatingType(x.scalar_type())) {
    auto st = std::make_shared<HaloGrads>();
    st->group = &group, st->left = left, st->right = right, st->both = both;
    p.grads_ = st;
    attach_backward("HaloExchangeBackward", {x}, out,
                    [st, T, e, times, opt = x.options(), sizes = x.sizes().vec()](std::vector<Tensor> grads) {
                      const auto t0 = Clock::now();
                      Tensor g = grads[0].defined() ? grads[0].clone() : at::zeros(sizes, opt);
                      if (!st->started) st->start(g.narrow(1, 0, e));
                      for (auto& w : st->works) w->wait();
                      g.narrow(1, T - e, e).add_(st->from_right);
                      if (st->both) g.narrow(1, 0, e).add_(st->from_left);
                      st->works.clear();
                      count_backward(times, t0);
                      return std::vector<Tensor>{g};
                    });
  }
  p.h_.x = out[0];
  return p;
}

Halo PendingHalo::wait() {
  const auto t0 = Clock::now();
  for (auto& w : works_) w->wait();
  works_.clear();
  if (times_) {
    times_->halo_wait_s += seconds_since(t0);
    ++times_->halo_waits;
  }
  if (grads_) {  // the halos, functions of x (through h_.x) from now on
    std::vector<Tensor> out{h_.left};
    if (h_.right.defined()) out.push_back(h_.right);
    attach_backward("HaloGradientsBackward", {h_.x}, out,
                    [st = grads_, overlap = overlap_backward_, times = times_](std::vector<Tensor> grads) {
                      st->grad_left = grads[0];
                      if (st->both) st->grad_right = grads[1];
                      if (overlap) {  // in flight while the chunk's projections compute their gradients
                        const Tensor& some = grads[0].defined() ? grads[0] : grads.back();
                        if (some.defined()) st->start(some);
                        if (some.defined() && times) ++times->halo_grads_early;
                      }
                      return std::vector<Tensor>{Tensor()};
                    });
    h_.left = out[0];
    if (h_.right.defined()) h_.right = out[1];
    grads_.reset();
  }
  return h_;
}

Halo halo_exchange(comm::Communicator& group, const Tensor& x, int64_t e, bool both) {
  return start_halo_exchange(group, x, e, both).wait();
}

Tensor all_gather_seq(comm::Communicator& group, const Tensor& x) {
  Gather g = start_gather(group, x, nullptr, false);
  g.work->wait();
  return finish_gather(g);
}

Tensor all_gather_seq(SeqGroup& group, const Tensor& x, const std::function<void()>& independent) {
  Gather g = start_gather(*group.comm, x, group.times, group.overlap);
  ExchangeTimes& t = *group.times;
  auto wait = [&] {
    const auto t0 = Clock::now();
    g.work->wait();
    t.gather_wait_s += seconds_since(t0);
    ++t.gather_waits;
  };
  if (!group.overlap) wait();
  if (independent) independent(), ++t.gathers_overlapped;
  if (group.overlap) wait();
  return finish_gather(g);
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
                        int64_t slice_len, int64_t ext, bool causal, int64_t row_cost) {
  torch::NoGradGuard no_grad;
  SeqChunk c;
  c.group = std::make_shared<SeqGroup>();
  c.group->comm = &group;
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
    const TokenRange rows = balanced_causal_rows(c.total_slices, group.size(), j, row_cost);
    if (rows.begin != j * n_local || rows.end != (j + 1) * n_local) c.balance_global = true;
    if (j == group.rank()) c.global_first = rows.begin, c.global_rows = rows.size();
  }
  c.slice_mask_all = all_gather_seq(group, mask.reshape({mask.size(0), n_local, slice_len}).any(-1));
  return c;
}

}  // namespace cst::model
