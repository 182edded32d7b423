#include "comm/reducer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <sstream>

namespace cst::comm {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

GradReducer::NamedTensors to_named(const torch::OrderedDict<std::string, at::Tensor>& d) {
  GradReducer::NamedTensors out;
  for (const auto& item : d) out.emplace_back(item.key(), item.value());
  return out;
}

// Fingerprint of one tensor for broadcast_parameters: ndim, 8 sizes (-1 padded), dtype, name hash.
constexpr int64_t kMaxDims = 8;
constexpr int64_t kFpCols = kMaxDims + 3;

int64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return static_cast<int64_t>(h);
}

std::string shape_of(const int64_t* row) {
  std::ostringstream os;
  os << "[";
  for (int64_t d = 0; d < std::min(row[0], kMaxDims); ++d) os << (d ? ", " : "") << row[1 + d];
  os << "] " << static_cast<at::ScalarType>(row[1 + kMaxDims]);
  return os.str();
}

}  // namespace

// Post-hook of a parameter's AccumulateGrad node: runs once .grad() holds this backward's sum.
class GradReducer::Hook : public torch::autograd::FunctionPostHook {
 public:
  Hook(GradReducer* r, size_t var) : r_(r), var_(var) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    r_->mark_ready(var_);
    return outputs;
  }

 private:
  GradReducer* r_;
  size_t var_;
};

GradReducer::GradReducer(Communicator& comm, torch::nn::Module& module, ReducerOptions opts)
    : GradReducer(comm, to_named(module.named_parameters(true)), to_named(module.named_buffers(true)), opts) {}

GradReducer::GradReducer(Communicator& comm, NamedTensors params, NamedTensors buffers, ReducerOptions opts)
    : comm_(comm), opts_(opts), buffers_(std::move(buffers)) {
  CST_CHECK(opts_.first_bucket_bytes > 0 && opts_.bucket_bytes > 0,
            "GradReducer: bucket sizes must be > 0, got first_bucket_bytes "
                << opts_.first_bucket_bytes << ", bucket_bytes " << opts_.bucket_bytes);
  for (auto& [name, p] : params) {
    CST_CHECK(p.defined(), "GradReducer: parameter '" << name << "' is undefined");
    if (!p.requires_grad()) continue;
    CST_CHECK(p.is_leaf(), "GradReducer: parameter '" << name << "' is not a leaf tensor");
    Var v;
    v.name = name;
    v.param = p;
    v.numel = p.numel();
    vars_.push_back(std::move(v));
  }

  // Buckets in reverse registration order.
  for (size_t k = vars_.size(); k-- > 0;) {
    Var& v = vars_[k];
    if (!buckets_.empty()) {
      const Bucket& cur = buckets_.back();
      const at::Tensor& first = vars_[cur.vars.front()].param;
      const int64_t limit = buckets_.size() == 1 ? opts_.first_bucket_bytes : opts_.bucket_bytes;
      if (cur.bytes >= limit || first.scalar_type() != v.param.scalar_type() || first.device() != v.param.device())
        buckets_.emplace_back();
    } else {
      buckets_.emplace_back();
    }
    Bucket& b = buckets_.back();
    v.bucket = buckets_.size() - 1;
    v.offset = b.bytes / static_cast<int64_t>(v.param.element_size());
    b.vars.push_back(k);
    b.bytes += v.numel * static_cast<int64_t>(v.param.element_size());
  }
  for (Bucket& b : buckets_) {
    const at::Tensor& p = vars_[b.vars.front()].param;
    b.buffer = at::zeros({b.bytes / static_cast<int64_t>(p.element_size())}, p.options().requires_grad(false));
  }

  for (size_t k = 0; k < vars_.size(); ++k) {
    auto acc = torch::autograd::impl::grad_accumulator(vars_[k].param);
    CST_CHECK(acc != nullptr, "GradReducer: parameter '" << vars_[k].name << "' has no gradient accumulator");
    hook_keys_.push_back(acc->add_post_hook(std::make_unique<Hook>(this, k)));
    accumulators_.push_back(std::move(acc));
  }
}

GradReducer::~GradReducer() {
  for (size_t k = 0; k < accumulators_.size(); ++k) accumulators_[k]->del_post_hook(hook_keys_[k]);
  // Outstanding Works keep their buffers alive until the collectives end.
}

std::vector<GradReducer::BucketInfo> GradReducer::bucket_layout() const {
  std::vector<BucketInfo> out;
  for (const Bucket& b : buckets_) {
    BucketInfo info;
    info.bytes = b.bytes;
    for (size_t k : b.vars) info.params.push_back(vars_[k].name);
    out.push_back(std::move(info));
  }
  return out;
}

// ---- the step --------------------------------------------------------------------------------

void GradReducer::prepare_for_backward(bool sync) {
  std::lock_guard<std::mutex> lk(mu_);
  CST_CHECK(!(armed_ && sync_),
            "GradReducer::prepare_for_backward: the previous synchronising backward was not finalized "
            "(call finalize(step) after it)");
  armed_ = true;
  sync_ = sync;
  if (!sync) return;
  for (Var& v : vars_) v.ready = false;
  for (Bucket& b : buckets_) {
    b.pending = b.vars.size();
    b.in_backward = false;
    b.work.reset();
  }
  next_launch_ = 0;
}

void GradReducer::mark_ready(size_t k) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!armed_ || !sync_) return;  // accumulation micro-step, or a backward outside a step
  Var& v = vars_[k];
  CST_CHECK(!v.ready, "GradReducer: the gradient of '" << v.name
                                                       << "' became ready twice in one synchronising "
                                                          "backward (call prepare_for_backward before each backward)");
  v.ready = true;
  Bucket& b = buckets_[v.bucket];
  at::Tensor slot = b.buffer.narrow(0, v.offset, v.numel);
  const at::Tensor& g = v.param.grad();
  if (g.defined())
    slot.view(g.sizes()).copy_(g);
  else
    slot.zero_();
  if (--b.pending == 0 && opts_.overlap) launch_ready_locked();
}

void GradReducer::launch_ready_locked() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    launch_locked(next_launch_, /*in_backward=*/true);
    ++next_launch_;
  }
}

void GradReducer::launch_locked(size_t b, bool in_backward) {
  buckets_[b].in_backward = in_backward;
  buckets_[b].work = comm_.all_reduce_async(buckets_[b].buffer, ReduceOp::kSum);
}

void GradReducer::finalize(int64_t step) {
  std::lock_guard<std::mutex> lk(mu_);
  CST_CHECK(armed_, "GradReducer::finalize(step " << step << "): no prepare_for_backward before it");
  armed_ = false;
  if (!sync_) return;
  sync_ = false;
  const auto t0 = Clock::now();
  ReducerStats st;
  st.step = step;
  st.buckets = static_cast<int>(buckets_.size());

  // Gradients that backward did not produce: zeros, so that no rank waits for them.
  std::vector<std::string> unused;
  for (size_t b = next_launch_; b < buckets_.size(); ++b) {
    for (size_t k : buckets_[b].vars) {
      Var& v = vars_[k];
      if (v.ready) continue;
      v.ready = true;
      buckets_[b].buffer.narrow(0, v.offset, v.numel).zero_();
      unused.push_back(v.name);
    }
    buckets_[b].pending = 0;
  }
  if (!unused.empty() && comm_.rank() == 0 && !warned_unused_) {
    warned_unused_ = true;
    std::ostringstream os;
    for (size_t i = 0; i < unused.size(); ++i) os << (i ? ", " : "") << unused[i];
    std::cerr << "[cst] warning: GradReducer at step " << step << ": " << unused.size()
              << " parameter(s) got no gradient in backward and are reduced as zeros: " << os.str()
              << ". They must be unused on every rank (else gradients differ from a true average); "
                 "buckets holding them cannot overlap with backward. (Warned once.)\n";
  }
  for (; next_launch_ < buckets_.size(); ++next_launch_) launch_locked(next_launch_, /*in_backward=*/false);

  const double inv_world = 1.0 / comm_.size();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bk = buckets_[b];
    const auto tw = Clock::now();
    try {
      bk.work->wait(opts_.timeout_s);
    } catch (const CommTimeout& e) {
      std::ostringstream os;
      os << "GradReducer watchdog: all_reduce of bucket " << b << " of " << buckets_.size() << " (" << bk.bytes
         << " bytes, " << bk.vars.size() << " parameters from '" << vars_[bk.vars.front()].name
         << "') did not complete within " << opts_.timeout_s << " s at step " << step << " on rank " << comm_.rank()
         << ": " << e.what();
      throw CommTimeout(os.str());
    }
    st.wait_seconds += seconds_since(tw);
    st.comm_seconds += bk.work->elapsed_seconds();
    st.bytes += bk.bytes;
    if (bk.in_backward) ++st.buckets_launched_in_backward;
    bk.work.reset();
    if (comm_.size() > 1) bk.buffer.mul_(inv_world);
    for (size_t k : bk.vars) {
      Var& v = vars_[k];
      at::Tensor avg = bk.buffer.narrow(0, v.offset, v.numel).view(v.param.sizes());
      at::Tensor& g = v.param.mutable_grad();
      if (g.defined())
        g.copy_(avg);
      else
        g = avg.clone();
    }
  }
  st.finalize_seconds = seconds_since(t0);
  last_ = st;
}

// ---- start-up --------------------------------------------------------------------------------

void GradReducer::broadcast_parameters(uint64_t config_hash) {
  const int world = comm_.size(), me = comm_.rank();
  // The device collectives run on: that of the parameters (CUDA for NCCL), else CPU.
  at::Device dev = vars_.empty() ? at::Device(at::kCPU) : vars_.front().param.device();
  auto on_dev = at::TensorOptions().dtype(at::kLong).device(dev);

  std::vector<std::pair<std::string, at::Tensor>> all;
  for (const Var& v : vars_) all.emplace_back(v.name, v.param);
  for (const auto& b : buffers_) all.push_back(b);

  // 1. counts and config hash.
  at::Tensor head =
      at::tensor(std::vector<int64_t>{static_cast<int64_t>(vars_.size()), static_cast<int64_t>(buffers_.size()),
                                      static_cast<int64_t>(config_hash)},
                 at::TensorOptions().dtype(at::kLong))
          .to(dev);
  at::Tensor heads = at::empty({world, 3}, on_dev);
  comm_.all_gather(head, heads);
  heads = heads.cpu();
  const int64_t* h = heads.data_ptr<int64_t>();
  for (int r = 1; r < world; ++r) {
    const int64_t* o = h + 3 * r;
    CST_CHECK(o[2] == h[2], "GradReducer::broadcast_parameters: model config hash differs: rank 0 has 0x"
                                << std::hex << static_cast<uint64_t>(h[2]) << ", rank " << std::dec << r << " has 0x"
                                << std::hex << static_cast<uint64_t>(o[2]) << std::dec
                                << ": every rank must build the same model configuration (seen on rank " << me << ")");
    CST_CHECK(o[0] == h[0] && o[1] == h[1], "GradReducer::broadcast_parameters: rank 0 has "
                                                << h[0] << " trainable parameters and " << h[1] << " buffers, rank "
                                                << r << " has " << o[0] << " and " << o[1] << " (seen on rank " << me
                                                << ")");
  }

  // 2. per tensor: names, shapes, dtypes.
  const int64_t n = static_cast<int64_t>(all.size());
  if (n > 0) {
    at::Tensor fp = at::full({n, kFpCols}, -1, at::TensorOptions().dtype(at::kLong));
    int64_t* f = fp.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      const at::Tensor& t = all[i].second;
      int64_t* row = f + i * kFpCols;
      row[0] = t.dim();
      for (int64_t d = 0; d < std::min<int64_t>(t.dim(), kMaxDims); ++d) row[1 + d] = t.size(d);
      row[1 + kMaxDims] = static_cast<int64_t>(t.scalar_type());
      row[2 + kMaxDims] = fnv1a(all[i].first);
      // Rank-count-independent check of dims beyond kMaxDims: fold them into the name hash.
      for (int64_t d = kMaxDims; d < t.dim(); ++d) row[2 + kMaxDims] ^= t.size(d) * 31 + d;
    }
    at::Tensor fps = at::empty({world, n, kFpCols}, on_dev);
    at::Tensor fp_dev = fp.to(dev);
    comm_.all_gather(fp_dev, fps);
    fps = fps.cpu();
    const int64_t* g = fps.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t* r0 = g + i * kFpCols;
      for (int r = 1; r < world; ++r) {
        const int64_t* rr = g + (static_cast<int64_t>(r) * n + i) * kFpCols;
        if (std::equal(r0, r0 + kFpCols, rr)) continue;
        const char* what = i < static_cast<int64_t>(vars_.size()) ? "parameter" : "buffer";
        if (r0[2 + kMaxDims] != rr[2 + kMaxDims] && std::equal(r0, r0 + 2 + kMaxDims, rr))
          CST_THROW("GradReducer::broadcast_parameters: " << what << " " << i << " ('" << all[i].first << "' on rank "
                                                          << me << ") has a different name on rank " << r
                                                          << " than on rank 0 (seen on rank " << me << ")");
        CST_THROW("GradReducer::broadcast_parameters: " << what << " '" << all[i].first << "' (index " << i << ") is "
                                                        << shape_of(r0) << " on rank 0 but " << shape_of(rr)
                                                        << " on rank " << r << " (seen on rank " << me << ")");
      }
    }
  }

  // 3. rank 0's values everywhere.
  for (auto& [name, t] : all) {
    at::Tensor d = t.detach();
    comm_.broadcast(d, 0);
  }
}

}  // namespace cst::comm
