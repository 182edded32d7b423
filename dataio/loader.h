// The deterministic streaming loader: global batches over a SampleSource, split among ranks.
//
// Order. An epoch visits the source's samples at positions 0, 1, 2, ...; position p holds
// sample FeistelPermutation(n, mix(seed, epoch))(p) when training, sample p when evaluating.
// A global batch is G consecutive positions [c, c+G) where c = consumed_samples; rank r of W
// takes positions [c + floor(m*r/W), c + floor(m*(r+1)/W)) of a batch of m samples (m = G
// except for the tail of an evaluation pass), so the union over ranks is the same for every W.
// Training drops the last partial global batch of an epoch and then starts the next epoch;
// evaluation makes one pass over every sample and then next() returns nullopt.
//
// State. The whole state is LoaderState{epoch, consumed_samples}: a checkpoint taken at world
// size W and restored at world size W' (same G and seed) continues the identical global stream.
//
// Threads and memory. A background thread reads up to `prefetch` batches ahead into a bounded
// queue. Memory bound, per rank: (prefetch + 2) batches of B = G/W rows of L tokens (queued +
// being built + the one held by the caller), each row 10*L bytes for MLM (ids 4 + labels 4 +
// mask 1 + segment 1) or 4*L for LM; e.g. MLM, prefetch 4, B 32, L 512: 6*32*5120 B = 1 MiB.
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
#include "dataio/masking.h"
#include "dataio/source.h"

namespace cst::dataio {

struct LoaderState {
  int64_t epoch = 0;             // training epoch (always 0 when evaluating)
  int64_t consumed_samples = 0;  // global samples of this epoch already handed out (all ranks)
  bool operator==(const LoaderState& o) const {
    return epoch == o.epoch && consumed_samples == o.consumed_samples;
  }
};

// The JSON form of a LoaderState, as checkpoint manifests store it (docs/CHECKPOINT.md).
Json to_json(const LoaderState& s);
// Reads it back. Throws cst::InputError naming `where` and the field when a field is missing,
// not an integer, or negative.
LoaderState loader_state_from_json(const Json& j, const std::string& where);

struct LoaderOptions {
  int64_t global_batch = 0;  // G: samples per step summed over all ranks; G % world_size == 0
  int rank = 0;              // this rank, in [0, world_size)
  int world_size = 1;
  uint64_t seed = 0;         // shuffling and masking seed
  bool train = true;         // true: shuffled epochs forever; false: one sequential pass
  int prefetch = 4;          // batches read ahead (>= 1); bounds memory, see above
  MaskingOptions masking;    // MLM with dynamic masks only
  void validate() const;     // throws cst::Error
};

// This rank's share of one global batch. Row-major arrays of rows x cols.
struct Batch {
  LoaderState state_after;  // the loader state once this batch is consumed (checkpoint this)
  int64_t global_rows = 0;  // m: samples in the global batch (all ranks)
  int64_t rows = 0;         // this rank's samples (may be 0 in an evaluation tail)
  int64_t cols = 0;         // L: LM N+1 (inputs [:, :N], targets [:, 1:]); MLM S
  std::vector<int64_t> sample_index;     // [rows] global sample ids (provenance, tests)
  std::vector<int32_t> input_ids;        // [rows, cols] (MLM: after masking)
  std::vector<uint8_t> attention_mask;   // [rows, cols] MLM only, 1 = real token
  std::vector<uint8_t> segment_ids;      // [rows, cols] MLM only
  std::vector<int32_t> labels;           // [rows, cols] MLM only, -100 = not predicted
  std::vector<int8_t> next_sentence_labels;  // [rows] MLM only, -1 = none
};

// The global sample ids rank `rank` of `world` gets for the batch starting at `state`, with
// `m` = min(G, remaining) samples. Pure function; the loader uses it.
std::vector<int64_t> rank_sample_indices(int64_t num_samples, uint64_t seed, bool shuffle,
                                         const LoaderState& state, int64_t m, int rank, int world);

class Loader {
 public:
  // Starts the prefetch thread at `start` (consumed_samples < samples_per_epoch()).
  Loader(std::shared_ptr<SampleSource> source, LoaderOptions opt, LoaderState start = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch; nullopt once an evaluation pass is over (training never ends).
  std::optional<Batch> next();
  LoaderState state() const { return state_; }  // after the last batch next() returned
  // Samples an epoch hands out: training floor(n/G)*G, evaluation n.
  int64_t samples_per_epoch() const;
  const SampleSource& source() const { return *source_; }

 private:
  void produce(LoaderState from);  // the prefetch thread's loop
  Batch make_batch(const LoaderState& s) const;

  std::shared_ptr<SampleSource> source_;
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
