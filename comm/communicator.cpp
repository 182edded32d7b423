#include "comm/communicator.h"

#include <ATen/ATen.h>

#include <sstream>

namespace cst::comm {

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

namespace detail {

std::string describe(const at::Tensor& t) {
  std::ostringstream os;
  if (!t.defined()) return "an undefined tensor";
  os << nbytes(t) << " bytes of " << t.scalar_type() << " " << t.sizes() << " on " << t.device();
  return os.str();
}

namespace {
class CompletedWork : public Work {
 public:
  explicit CompletedWork(double elapsed) : elapsed_(elapsed) {}
  bool done() override { return true; }
  void wait(double) override {}
  double elapsed_seconds() const override { return elapsed_; }

 private:
  double elapsed_;
};
}  // namespace

std::unique_ptr<Work> completed_work(double elapsed_seconds) {
  return std::make_unique<CompletedWork>(elapsed_seconds);
}

}  // namespace detail

std::unique_ptr<Work> Communicator::all_gather_async(const at::Tensor& in, at::Tensor out) {
  all_gather(in, out);
  return detail::completed_work();
}

std::unique_ptr<Work> Communicator::reduce_scatter_async(const at::Tensor& in, at::Tensor out, ReduceOp op) {
  reduce_scatter(in, out, op);
  return detail::completed_work();
}

std::unique_ptr<Work> Communicator::send_recv_async(const at::Tensor& send, int dst, at::Tensor recv, int src) {
  send_recv(send, dst, recv, src);
  return detail::completed_work();
}

double Communicator::all_reduce_scalar(double v, ReduceOp op) { return all_reduce_doubles({v}, op)[0]; }

std::vector<double> Communicator::all_reduce_doubles(const std::vector<double>& v, ReduceOp op) {
  if (v.empty()) return {};
  at::Tensor t = at::tensor(v, at::TensorOptions().dtype(at::kDouble)).to(collective_device());
  all_reduce(t, op);
  t = t.cpu().contiguous();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

int64_t Communicator::all_reduce_int(int64_t v, ReduceOp op) {
  CST_CHECK(op != ReduceOp::kAvg, "all_reduce_int: kAvg is not defined for integers (use all_reduce_scalar)");
  at::Tensor t = at::full({1}, v, at::TensorOptions().dtype(at::kLong).device(collective_device()));
  all_reduce(t, op);
  return t.item<int64_t>();
}

// ---- LocalCommunicator ------------------------------------------------------------------------

void LocalCommunicator::all_reduce(at::Tensor& t, ReduceOp op) {
  CST_CHECK(t.defined(), "local all_reduce: undefined tensor");
  CST_CHECK(op != ReduceOp::kAvg || at::isFloatingType(t.scalar_type()),
            "local all_reduce: kAvg needs a floating dtype, got " << detail::describe(t));
}

std::unique_ptr<Work> LocalCommunicator::all_reduce_async(at::Tensor t, ReduceOp op) {
  all_reduce(t, op);
  return detail::completed_work();
}

void LocalCommunicator::broadcast(at::Tensor& t, int root) {
  CST_CHECK(root == 0, "local broadcast: root " << root << " is not a rank of a 1-rank communicator");
}

void LocalCommunicator::all_gather(const at::Tensor& in, at::Tensor& out) {
  CST_CHECK(out.dim() == in.dim() + 1 && out.size(0) == 1 && out.sizes().slice(1) == in.sizes() &&
                out.scalar_type() == in.scalar_type(),
            "local all_gather: out must be [1, " << in.sizes() << "] " << in.scalar_type() << ", got "
                                                 << detail::describe(out));
  out[0].copy_(in);
}

void LocalCommunicator::reduce_scatter(const at::Tensor& in, at::Tensor& out, ReduceOp op) {
  CST_CHECK(in.dim() == out.dim() + 1 && in.size(0) == 1 && in.sizes().slice(1) == out.sizes() &&
                out.scalar_type() == in.scalar_type(),
            "local reduce_scatter: in must be [1, " << out.sizes() << "] " << out.scalar_type() << ", got "
                                                    << detail::describe(in));
  CST_CHECK(op != ReduceOp::kAvg || at::isFloatingType(in.scalar_type()),
            "local reduce_scatter: kAvg needs a floating dtype, got " << detail::describe(in));
  out.copy_(in[0]);
}

std::unique_ptr<Communicator> LocalCommunicator::split(int color, int /*key*/) {
  CST_CHECK(color >= 0, "local split: color " << color << " must be >= 0");
  return std::make_unique<LocalCommunicator>();
}

void LocalCommunicator::send_recv(const at::Tensor& send, int dst, at::Tensor& recv, int src) {
  CST_CHECK(dst == -1 || dst == 0, "local send_recv: dst " << dst << " is not a rank");
  CST_CHECK(src == -1 || src == 0, "local send_recv: src " << src << " is not a rank");
  CST_CHECK((dst == 0) == (src == 0), "local send_recv: a send to self needs a receive from self");
  if (src == 0) {
    CST_CHECK(recv.sizes() == send.sizes() && recv.scalar_type() == send.scalar_type(),
              "local send_recv: recv " << detail::describe(recv) << " does not match send " << detail::describe(send));
    recv.copy_(send);
  }
}

}  // namespace cst::comm
