#include "dataio/rng.h"

#include "common/error.h"

namespace cst::dataio {

FeistelPermutation::FeistelPermutation(uint64_t n, uint64_t key) : n_(n), key_(key) {
  CST_CHECK(n >= 1, "FeistelPermutation of an empty range");
  int bits = 0;
  while (bits < 64 && (uint64_t{1} << bits) < n) ++bits;
  half_bits_ = bits < 2 ? 1 : (bits + 1) / 2;
  CST_CHECK(half_bits_ <= 31, "FeistelPermutation: n = " << n << " too large");
  half_mask_ = (uint64_t{1} << half_bits_) - 1;
}

uint64_t FeistelPermutation::network(uint64_t x) const {
  uint64_t left = x >> half_bits_, right = x & half_mask_;
  for (uint64_t round = 0; round < 6; ++round) {
    uint64_t f = mix(key_ ^ (round << 58), right) & half_mask_;
    uint64_t next_right = left ^ f;
    left = right;
    right = next_right;
  }
  return (left << half_bits_) | right;
}

uint64_t FeistelPermutation::operator()(uint64_t i) const {
  CST_CHECK(i < n_, "FeistelPermutation index " << i << " outside [0, " << n_ << ")");
  // Cycle-walking: the network permutes [0, 4^half_bits); iterating it from i until the
  // value falls in [0, n) restricts it to a permutation of [0, n).
  uint64_t x = network(i);
  while (x >= n_) x = network(x);
  return x;
}

}  // namespace cst::dataio
