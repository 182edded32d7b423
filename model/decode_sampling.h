// Choosing the next token from a row of logits: greedy, or sampling with temperature, top-k and
// top-p (nucleus) filtering.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace cst::model {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (argmax); > 0: softmax(logits / temperature)
  int64_t top_k = 0;         // > 0: only the k most likely tokens; 0: all
  double top_p = 1.0;        // < 1: the smallest set of most likely tokens whose mass reaches top_p
  void validate() const;     // InputError naming the option and value
};

// logits [V] (any float dtype) -> the chosen token id. Ties of the greedy choice go to the
// lowest id. Sampling draws one number from `gen` (torch::multinomial).
int64_t choose_token(const at::Tensor& logits, const SamplingOptions& opt, at::Generator& gen);

}  // namespace cst::model
