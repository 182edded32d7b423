// The deterministic streaming loader: global batches over a SampleSource, split among ranks.
//
// Order, one corpus. An epoch visits the source's samples at positions 0, 1, 2, ...; position p
// holds sample FeistelPermutation(n, mix(seed, epoch))(p) when training, sample p when
// evaluating. A global batch is G consecutive positions [c, c+G) where c = consumed_samples;
// rank r of W takes positions [c + floor(m*r/W), c + floor(m*(r+1)/W)) of a batch of m samples
// (m = G except for the tail of an evaluation pass), so the union over ranks is the same for
// every W. Training drops the last partial global batch of an epoch and then starts the next
// epoch; evaluation makes one pass over every sample and then next() returns nullopt.
//
// Order, a blend (a BlendSource of >= 2 corpora, blend.h). Training: position p of the run holds
// BlendSchedule::draw(p), the global batch is positions [c, c+G) with c = consumed_samples of the
// whole run, split among ranks as above; no batch is dropped (each corpus wraps into its next
// epoch on its own). Evaluation: one sequential pass over each corpus in blend order (at most
// eval_batches batches each); a batch never mixes corpora. Every row carries its corpus.
//
// State. LoaderState{epoch, consumed_samples} for one corpus; a blend adds one CorpusState per
// corpus. A checkpoint taken at world size W and restored at world size W' (same G and seed; a
// blend: any G) continues the identical global stream.
//
// Threads and memory. A background thread reads up to `prefetch` batches ahead into a bounded
// queue. Memory bound, per rank: (prefetch + 2) batches of B = G/W rows of L tokens (queued +
// being built + the one held by the caller), each row 10*L bytes for MLM (ids 4 + labels 4 +
// mask 1 + segment 1), 6*L + 20 for CLS, or 4*L for LM; e.g. MLM, prefetch 4, B 32, L 512: 6*32*5120 B = 1 MiB.
// An exception in the thread (bad data) is rethrown by next(). The destructor stops and joins
// the thread. The Loader owns the thread; the SampleSource is shared and must not be used by
// anyone else while the Loader lives. Not thread-safe: one consumer thread calls next().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/json.h"
#include "common/parallel_layout.h"
#include "dataio/blend.h"
#include "dataio/masking.h"
#include "dataio/source.h"

namespace cst::dataio {

// One corpus of a blend: which it is (path, weight, samples: compared on resume) and where its
// own stream stands.
struct CorpusState {
  std::string path;              // as written in the blend (messages only; never compared)
  double weight = 0;             // normalised weight, (0, 1]
  int64_t samples = 0;           // n: the corpus's samples (one of its epochs)
  int64_t epoch = 0;             // training: the corpus's epoch; evaluation: 0
  int64_t consumed_samples = 0;  // training: samples of that epoch handed out, [0, n);
                                 // evaluation: samples of the corpus evaluated
  bool operator==(const CorpusState& o) const {
    return path == o.path && weight == o.weight && samples == o.samples && epoch == o.epoch &&
           consumed_samples == o.consumed_samples;
  }
};

struct LoaderState {
  LoaderState() = default;
  LoaderState(int64_t e, int64_t c, std::vector<CorpusState> per_corpus = {})
      : epoch(e), consumed_samples(c), corpora(std::move(per_corpus)) {}
  int64_t epoch = 0;                 // one corpus: training epoch (evaluation: 0); a blend: 0
  int64_t consumed_samples = 0;      // one corpus: global samples of this epoch handed out (all
                                     // ranks); a blend: of the whole run (sum over the corpora)
  std::vector<CorpusState> corpora;  // a blend of >= 2 corpora: one each, in blend order; else empty
  bool operator==(const LoaderState& o) const {
    return epoch == o.epoch && consumed_samples == o.consumed_samples && corpora == o.corpora;
  }
};

// The JSON form of a LoaderState, as checkpoint manifests store it (docs/CHECKPOINT.md):
//   one corpus: {"epoch": e, "consumed_samples": c}
//   a blend:    {"epoch": 0, "consumed_samples": c, "corpora": [{"path": "data/wiki/train",
//                "weight": 0.7, "samples": n, "epoch": e, "consumed_samples": c_j}, ...]}
Json to_json(const LoaderState& s);
// Reads either form back. Throws cst::InputError naming `where`, the field (corpora[i].field)
// and the value when a field is missing, of the wrong type or out of range (counts < 0, weights
// outside (0, 1] or not summing to 1, consumed_samples >= samples, a blend's epoch != 0 or its
// consumed_samples != the sum of epoch * samples + consumed_samples over its corpora).
LoaderState loader_state_from_json(const Json& j, const std::string& where);

// The state a loader over `source` starts from: position 0, and for a BlendSource of >= 2
// corpora its corpora (path, weight, samples) at position 0.
LoaderState initial_state(const SampleSource& source);
// "" when a state saved as `saved` can continue where a fresh state is `fresh`: both one corpus,
// or blends of the same corpora count, normalised weights (exactly) and sample counts, in the
// same order. Else a sentence naming both blends (paths, weights, samples).
std::string blend_difference(const LoaderState& saved, const LoaderState& fresh);

struct LoaderOptions {
  int64_t global_batch = 0;  // G: samples per step summed over all ranks; G % world_size == 0
  int rank = 0;              // this rank, in [0, world_size)
  int world_size = 1;
  uint64_t seed = 0;         // shuffling and masking seed
  bool train = true;         // true: shuffled epochs forever; false: one sequential pass
  int prefetch = 4;          // batches read ahead (>= 1); bounds memory, see above
  int64_t eval_batches = 0;  // evaluation: at most this many batches per corpus (0 = all samples)
  MaskingOptions masking;    // MLM with dynamic masks only
  void validate() const;     // throws cst::Error
  // rank, world_size: the layout's data-parallel replica and replica count (the S ranks of a
  // sequence read the same samples).
  void place(const ParallelLayout& layout);
};

// This rank's share of one global batch. Row-major arrays of rows x cols.
struct Batch {
  LoaderState state_after;                   // the loader state once this batch is consumed (checkpoint this)
  int64_t global_rows = 0;                   // m: samples in the global batch (all ranks)
  int64_t rows = 0;                          // this rank's samples (may be 0 in an evaluation tail)
  int64_t cols = 0;                          // L: LM N+1 (inputs [:, :N], targets [:, 1:]); MLM S
  std::vector<int64_t> sample_index;         // [rows] global sample ids (provenance, tests)
  std::vector<int32_t> corpus;               // [rows] corpus of each row in blend order (one corpus: 0)
  std::vector<int32_t> input_ids;            // [rows, cols] (MLM: after masking)
  std::vector<uint8_t> attention_mask;       // [rows, cols] MLM and CLS, 1 = real token
  std::vector<uint8_t> segment_ids;          // [rows, cols] MLM and CLS
  std::vector<int32_t> labels;               // [rows, cols] MLM only, -100 = not predicted
  std::vector<int8_t> next_sentence_labels;  // [rows] MLM only, -1 = none
  std::vector<int64_t> class_labels;         // [rows] CLS only: class id, -1 = none (regression: -1)
  std::vector<float> targets;                // [rows] CLS only: regression target, NaN = none
  std::vector<int64_t> example_index;        // [rows] CLS only: the example's index in its source split
};

// The global sample ids rank `rank` of `world` gets for the batch starting at `state`, with
// `m` = min(G, remaining) samples. Pure function; the loader uses it.
std::vector<int64_t> rank_sample_indices(int64_t num_samples, uint64_t seed, bool shuffle, const LoaderState& state,
                                         int64_t m, int rank, int world);

class Loader {
 public:
  // Starts the prefetch thread at `start` (one corpus: consumed_samples <= samples_per_epoch();
  // a blend: LoaderState{} or a state of the same blend, see blend_difference, at a position
  // the schedule agrees with). A bad start is an InputError naming the values.
  Loader(std::shared_ptr<SampleSource> source, LoaderOptions opt, LoaderState start = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch; nullopt once an evaluation pass is over (training never ends).
  std::optional<Batch> next();
  LoaderState state() const { return state_; }  // after the last batch next() returned
  // One corpus: samples an epoch hands out, training floor(n/G)*G, evaluation n (or
  // eval_batches * G if fewer). A blend: n summed over the corpora.
  int64_t samples_per_epoch() const;
  const SampleSource& source() const { return *source_; }

 private:
  void produce(LoaderState from);             // the prefetch thread's loop
  bool finished(const LoaderState& s) const;  // an evaluation pass is over
  int64_t eval_limit(int64_t n) const;        // samples of an n-sample corpus an evaluation reads
  Batch make_batch(const LoaderState& s) const;
  Batch make_blend_batch(const LoaderState& s) const;
  void read_rows(Batch& b, const std::vector<int64_t>& epochs) const;  // fills b from sample_index
  LoaderState blend_state(int64_t position) const;                     // training state after `position` samples
  void check_blend_start(const LoaderState& start) const;

  std::shared_ptr<SampleSource> source_;
  std::shared_ptr<BlendSource> blend_;     // set for a blend of >= 2 corpora
  std::optional<BlendSchedule> schedule_;  // set with blend_
  LoaderState fresh_;                      // with blend_: initial_state(*source_), every corpus at its start
  LoaderOptions opt_;
  LoaderState state_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::optional<Batch>> queue_;  // nullopt = end of an evaluation pass
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace cst::dataio
