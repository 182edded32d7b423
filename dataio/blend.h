// Data blends: several corpora read as one training stream, each by its weight (docs/DATA.md).
//
// Spec. "w1 path1 w2 path2 ..." (whitespace-separated weights, then paths, as Megatron-LM's
// weighted data paths); a single token is one path of weight 1. Weights are finite and > 0 and
// are normalised: w_j = x_j / (x_1 + ... + x_J).
//
// Schedule. Position p = 0, 1, 2, ... of the blended stream (the run's global samples, all ranks)
// belongs to a corpus by a chain of exact integer apportionments. With integer weights
// u_j = max(1, round(w_j * 2^40)), tail sums S_j = u_j + ... + u_{J-1} and phases
// o_j = mix(seed, j) mod S_j, node j of the chain keeps, of the first q positions reaching it,
//     A_j(q) = floor((u_j * q + o_j) / S_j)
// and passes the other q - A_j(q) on to node j + 1; the last corpus keeps every position that
// reaches it. The position arriving q-th at node j (0-based) is corpus j's iff A_j(q+1) > A_j(q).
// Therefore
//   - count(j, k), the positions of corpus j among [0, k), is a composition of j + 1 floors:
//     O(J) without replaying the stream, so a resume at any k knows every corpus's position;
//   - |count(j, k) - w_j * k| < j + 1 for every k (each node errs by less than one sample), so
//     every global batch of G samples holds each corpus's share to within J samples;
//   - it is a pure function of (weights, seed, p): never of world size, batch size or resume
//     point. Integer arithmetic (128-bit products): identical on every machine and compiler.
// Each corpus keeps its own stream and epochs: its m-th sample overall is, with n_j its sample
// count, position m mod n_j of epoch e = m / n_j, i.e. sample
//     FeistelPermutation(n_j, mix(mix(seed, e), kCorpusKey + j))(m mod n_j)
// of corpus j (rng.h). A blend has no epoch of its own; every corpus wraps independently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataio/source.h"

namespace cst::dataio {

struct BlendCorpus {
  std::string path;   // shard file or folder (list_shards)
  double weight = 1;  // normalised: a spec's weights sum to 1
};

struct BlendSpec {
  std::vector<BlendCorpus> corpora;  // >= 1, in the order written; paths distinct
  // "0.7 wiki/train 0.3 books/train" with the normalised weights; one corpus: its path.
  std::string str() const;
  std::vector<double> weights() const;
};

// Parses a blend as written in config key `key` (named in errors). Throws InputError naming the
// key, the token's position and its text for: an empty value, an odd number of tokens (a weight
// without a path), a weight that is not a finite number > 0, a path given twice.
BlendSpec parse_blend(const std::string& text, const std::string& key);

// Short names of the corpora for metrics (valid/<name>/loss): each path's last component that is
// not a split folder (train, validation, valid, test, dev), without ".h5"; names that collide get
// "-<index>" appended. E.g. "data/wiki/validation" -> "wiki".
std::vector<std::string> corpus_names(const BlendSpec& spec);

// Where a position of the blended stream reads from.
struct BlendDraw {
  int corpus = 0;
  int64_t epoch = 0;   // that corpus's epoch
  int64_t sample = 0;  // sample index within the corpus, [0, n_j)
};

inline constexpr uint64_t kCorpusKey = 0xb1e5d0c0ffee0000ULL;

// The schedule and the per-corpus shuffles above. Pure and immutable; cheap to copy.
class BlendSchedule {
 public:
  // weights: normalised, each > 0; corpus_samples: n_j >= 1 per corpus, same length.
  BlendSchedule(const std::vector<double>& weights, std::vector<int64_t> corpus_samples, uint64_t seed);
  int corpora() const { return static_cast<int>(u_.size()); }
  // The corpus of position p (>= 0); *m = its index in that corpus's stream (count(corpus, p)).
  int corpus_of(int64_t p, int64_t* m) const;
  // counts(k)[j] = count(j, k), the positions of corpus j among [0, k), for every j (sums to k).
  std::vector<int64_t> counts(int64_t k) const;
  // The sample that position p reads.
  BlendDraw draw(int64_t p) const;

 private:
  std::vector<uint64_t> u_, s_, o_;  // integer weights, tail sums, phases (see above)
  std::vector<int64_t> n_;
  uint64_t seed_;
};

// A SampleSource over the corpora of a blend: one index space, corpus j's samples at
// [start(j), start(j) + n_j). The Loader reads a BlendSource of >= 2 corpora as a blend (the
// schedule above); one of a single corpus reads exactly as that corpus. The corpora must agree
// on what a sample is: kind, sample length (LM N+1, MLM S), vocabulary size, tokenizer sha256,
// special token ids, static masks and (classification) num_classes and label names; construction throws InputError
// naming the first shard of both corpora and both values otherwise. Owns its corpora; not thread-safe (as every
// source).
class BlendSource : public SampleSource {
 public:
  BlendSource(BlendSpec spec, std::vector<std::shared_ptr<SampleSource>> corpora);

  SampleKind kind() const override { return corpora_[0]->kind(); }
  int64_t num_samples() const override { return starts_.back(); }
  int64_t sample_len() const override { return corpora_[0]->sample_len(); }
  int64_t vocab_size() const override { return corpora_[0]->vocab_size(); }
  SpecialTokens special() const override { return corpora_[0]->special(); }
  bool static_masks() const override { return corpora_[0]->static_masks(); }
  std::string tokenizer_sha256() const override { return corpora_[0]->tokenizer_sha256(); }
  std::string origin() const override { return corpora_[0]->origin(); }
  ClsMeta cls_meta() const override { return corpora_[0]->cls_meta(); }  // each corpus's task: corpus(j)
  void read(int64_t index, const SampleRow& out) override;

  const BlendSpec& spec() const { return spec_; }
  int num_corpora() const { return static_cast<int>(corpora_.size()); }
  const SampleSource& corpus(int j) const { return *corpora_[static_cast<size_t>(j)]; }
  int64_t start(int j) const { return starts_[static_cast<size_t>(j)]; }
  std::vector<int64_t> corpus_samples() const;  // n_j per corpus
  int corpus_of_index(int64_t index) const;     // the corpus holding global sample `index`

 private:
  BlendSpec spec_;
  std::vector<std::shared_ptr<SampleSource>> corpora_;
  std::vector<int64_t> starts_;  // starts_[j] = first index of corpus j; back() = total
};

// Opens every corpus of `spec` as an Hdf5Source (list_shards of its path, options `opt`, so each
// is also checked against the model config) and blends them.
std::shared_ptr<BlendSource> open_blend(const BlendSpec& spec, const SourceOptions& opt);

}  // namespace cst::dataio
