#include "comm/counting_communicator.h"

namespace cst::comm {

using detail::nbytes;

void CountingCommunicator::add(const char* op, int64_t received, int64_t sent) {
  std::lock_guard<std::mutex> lk(mu_);
  Count& c = counts_[op];
  ++c.calls;
  c.received_bytes += received;
  c.sent_bytes += sent;
}

CountingCommunicator::Count CountingCommunicator::count(const std::string& op) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = counts_.find(op);
  return it == counts_.end() ? Count{} : it->second;
}

CountingCommunicator::Count CountingCommunicator::total() const {
  std::lock_guard<std::mutex> lk(mu_);
  Count t;
  for (const auto& [op, c] : counts_) {
    t.calls += c.calls;
    t.received_bytes += c.received_bytes;
    t.sent_bytes += c.sent_bytes;
  }
  return t;
}

void CountingCommunicator::reset() {
  std::lock_guard<std::mutex> lk(mu_);
  counts_.clear();
}

namespace {
int64_t ring_all_reduce_bytes(const at::Tensor& t, int size) { return 2 * (size - 1) * nbytes(t) / size; }
}  // namespace

void CountingCommunicator::all_reduce(at::Tensor& t, ReduceOp op) {
  const int64_t b = ring_all_reduce_bytes(t, size());
  add("all_reduce", b, b);
  inner_.all_reduce(t, op);
}

std::unique_ptr<Work> CountingCommunicator::all_reduce_async(at::Tensor t, ReduceOp op) {
  const int64_t b = ring_all_reduce_bytes(t, size());
  add("all_reduce_async", b, b);
  return inner_.all_reduce_async(std::move(t), op);
}

void CountingCommunicator::broadcast(at::Tensor& t, int root) {
  const int64_t b = nbytes(t);
  add("broadcast", rank() == root ? 0 : b, rank() == root ? b : 0);
  inner_.broadcast(t, root);
}

void CountingCommunicator::all_gather(const at::Tensor& in, at::Tensor& out) {
  const int64_t b = (size() - 1) * nbytes(in);
  add("all_gather", b, b);
  inner_.all_gather(in, out);
}

void CountingCommunicator::reduce_scatter(const at::Tensor& in, at::Tensor& out, ReduceOp op) {
  const int64_t b = (size() - 1) * nbytes(out);
  add("reduce_scatter", b, b);
  inner_.reduce_scatter(in, out, op);
}

void CountingCommunicator::send_recv(const at::Tensor& send, int dst, at::Tensor& recv, int src) {
  add("send_recv", src >= 0 ? nbytes(recv) : 0, dst >= 0 ? nbytes(send) : 0);
  inner_.send_recv(send, dst, recv, src);
}

std::unique_ptr<Work> CountingCommunicator::all_gather_async(const at::Tensor& in, at::Tensor out) {
  const int64_t b = (size() - 1) * nbytes(in);
  add("all_gather", b, b);
  return inner_.all_gather_async(in, std::move(out));
}

std::unique_ptr<Work> CountingCommunicator::reduce_scatter_async(const at::Tensor& in, at::Tensor out, ReduceOp op) {
  const int64_t b = (size() - 1) * nbytes(out);
  add("reduce_scatter", b, b);
  return inner_.reduce_scatter_async(in, std::move(out), op);
}

std::unique_ptr<Work> CountingCommunicator::send_recv_async(const at::Tensor& send, int dst, at::Tensor recv, int src) {
  add("send_recv", src >= 0 ? nbytes(recv) : 0, dst >= 0 ? nbytes(send) : 0);
  return inner_.send_recv_async(send, dst, std::move(recv), src);
}

void CountingCommunicator::barrier() {
  add("barrier", 0, 0);
  inner_.barrier();
}

}  // namespace cst::comm
