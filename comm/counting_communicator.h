// CountingCommunicator: a Communicator that forwards every call to another one and counts, per
// operation, the calls and the bytes this rank moves. Benchmarks measure communication volume
// with it (bench_seq_parallel), tests check what code communicates (and when).
//
// Bytes are what this rank receives from its peers, the payload of the usual algorithms:
//   all_gather      (size - 1) x bytes(in)          (every other rank's block)
//   reduce_scatter  (size - 1) x bytes(out)         (ring: one block from each other rank)
//   all_reduce      2 (size - 1) / size x bytes(t)  (ring: reduce-scatter + all-gather)
//   broadcast       bytes(t) on every rank but the root
//   send_recv       bytes(recv) when src >= 0
// and sent_bytes() what it sends (send_recv: bytes(send) when dst >= 0; collectives: as received).
// Counters are thread-safe (the gradient reducer's hooks may run on autograd threads).
//
// Lifetime: `inner` must outlive this object. split() forwards to inner (the result is not counted).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "comm/communicator.h"

namespace cst::comm {

class CountingCommunicator : public Communicator {
 public:
  struct Count {
    int64_t calls = 0;
    int64_t received_bytes = 0;
    int64_t sent_bytes = 0;
  };

  explicit CountingCommunicator(Communicator& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const char* backend() const override { return inner_.backend(); }
  c10::Device collective_device() const override { return inner_.collective_device(); }

  void all_reduce(at::Tensor& t, ReduceOp op = ReduceOp::kSum) override;
  std::unique_ptr<Work> all_reduce_async(at::Tensor t, ReduceOp op = ReduceOp::kSum) override;
  void broadcast(at::Tensor& t, int root) override;
  void all_gather(const at::Tensor& in, at::Tensor& out) override;
  void reduce_scatter(const at::Tensor& in, at::Tensor& out, ReduceOp op = ReduceOp::kSum) override;
  void send_recv(const at::Tensor& send, int dst, at::Tensor& recv, int src) override;
  // Counted as their blocking forms ("all_gather", "reduce_scatter", "send_recv"), when issued.
  std::unique_ptr<Work> all_gather_async(const at::Tensor& in, at::Tensor out) override;
  std::unique_ptr<Work> reduce_scatter_async(const at::Tensor& in, at::Tensor out,
                                             ReduceOp op = ReduceOp::kSum) override;
  std::unique_ptr<Work> send_recv_async(const at::Tensor& send, int dst, at::Tensor recv, int src) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override { return inner_.split(color, key); }

  // Per operation: "all_reduce", "all_reduce_async", "broadcast", "all_gather",
  // "reduce_scatter", "send_recv", "barrier". Unseen operations count zero.
  Count count(const std::string& op) const;
  Count total() const;  // over every operation
  void reset();

 private:
  void add(const char* op, int64_t received, int64_t sent);
  Communicator& inner_;
  mutable std::mutex mu_;
  std::map<std::string, Count> counts_;
};

}  // namespace cst::comm
