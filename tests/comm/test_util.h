// Helpers shared by the comm tests.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/counting_communicator.h"
#include "comm/reducer.h"
#include "model/config.h"

namespace cst::comm::testing {

using comm::CountingCommunicator;  // comm/counting_communicator.h

// Calls of all_reduce_async counted by c.
inline int64_t async_calls(const CountingCommunicator& c) { return c.count("all_reduce_async").calls; }

// Registration order: a.weight [8,4], a.bias [8], b.weight [8,8], b.bias [8], c.weight [2,8],
// c.bias [2] (float32: 128, 32, 256, 32, 64, 8 bytes); u [3,3] + [3] only if with_unused.
struct Net : torch::nn::Module {
  explicit Net(bool with_unused = false) {
    a = register_module("a", torch::nn::Linear(4, 8));
    if (with_unused) u = register_module("u", torch::nn::Linear(3, 3));
    b = register_module("b", torch::nn::Linear(8, 8));
    c = register_module("c", torch::nn::Linear(8, 2));
  }
  at::Tensor forward(const at::Tensor& x) { return c(at::relu(b(at::relu(a(x))))); }
  torch::nn::Linear a{nullptr}, b{nullptr}, c{nullptr}, u{nullptr};
};

// Sum of squared outputs on 5 random inputs drawn with `seed`.
inline at::Tensor loss_of(Net& net, int64_t seed) {
  at::manual_seed(seed);
  return net.forward(at::randn({5, 4})).pow(2).sum();
}

// Copies of the gradients (undefined where none), registration order.
inline std::vector<at::Tensor> grads_of(Net& net) {
  std::vector<at::Tensor> g;
  for (auto& p : net.parameters()) g.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
  return g;
}

// Buckets for Net: [c.bias, c.weight] 72 B, [b.bias, b.weight] 288 B, [a.bias, a.weight] 160 B.
inline ReducerOptions small_buckets() {
  ReducerOptions o;
  o.first_bucket_bytes = 64;
  o.bucket_bytes = 256;
  return o;
}

// Expects fn to throw cst::Error whose message contains every one of parts.
inline void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << p << " in " << e.what();
  }
}

// A tiny causal-LM CST: 2 layers, D = 32, N = 32 in slices of 8, no dropout.
inline model::ModelConfig tiny_config() {
  model::ModelConfig c;
  c.task = model::Task::kLm;
  c.vocab_size = 50;
  c.d_model = 32;
  c.n_heads = 4;
  c.n_layers = 2;
  c.d_ff = 64;
  c.max_seq_len = 32;
  c.slice_len = 8;
  c.alpha = 2.0;
  c.dropout = 0.0;
  return c;
}

}  // namespace cst::comm::testing
