// Deterministic, platform-independent randomness for the data pipeline.
//
// Everything here is a pure function of its arguments (no state, no std:: distributions, whose
// output is implementation-defined), so sample order and masks are identical on every machine,
// compiler, world size and resume point.
//
//   splitmix64(x)           Steele, Lea & Flood's SplitMix64 finaliser: a 64-bit bijective mixer.
//   mix(a, b)               hash of a pair, splitmix64(a ^ splitmix64(b)).
//   counter_hash(key, i)    the i-th output of a counter-based stream keyed by key.
//   unit(h)                 the top 53 bits of h as a double in [0, 1).
//   FeistelPermutation      a keyed bijection of [0, n): a balanced Feistel network (6 rounds,
//                           round function = splitmix64 of key, round and right half) on the
//                           smallest even bit width >= log2(n), cycle-walked into [0, n).
#pragma once

#include <cstdint>

namespace cst::dataio {

constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
constexpr uint64_t mix(uint64_t a, uint64_t b) { return splitmix64(a ^ splitmix64(b)); }
constexpr uint64_t counter_hash(uint64_t key, uint64_t i) { return splitmix64(key + (i + 1) * 0xd1b54a32d192ed03ULL); }
constexpr double unit(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

// A keyed permutation of [0, n) evaluated point-wise in O(1) memory (expected < 4 network
// evaluations per call). Used to shuffle the global sample index space by (seed, epoch).
class FeistelPermutation {
 public:
  // n >= 1.
  FeistelPermutation(uint64_t n, uint64_t key);
  uint64_t size() const { return n_; }
  // The image of i (0 <= i < n); a bijection of [0, n) for a fixed (n, key).
  uint64_t operator()(uint64_t i) const;

 private:
  uint64_t network(uint64_t x) const;
  uint64_t n_, key_;
  int half_bits_;
  uint64_t half_mask_;
};

}  // namespace cst::dataio
