#include "dataio/loader.h"

#include "common/error.h"
#include "dataio/rng.h"

namespace cst::dataio {

void LoaderOptions::validate() const {
  CST_CHECK(world_size >= 1 && rank >= 0 && rank < world_size,
            "loader rank " << rank << " outside [0, " << world_size << ")");
  CST_CHECK(global_batch > 0 && global_batch % world_size == 0,
            "global batch " << global_batch << " must be a positive multiple of world size " << world_size);
  CST_CHECK(prefetch >= 1, "loader prefetch " << prefetch << " must be >= 1");
  masking.validate();
}

Json to_json(const LoaderState& s) {
  return Json{{"epoch", s.epoch}, {"consumed_samples", s.consumed_samples}};
}

LoaderState loader_state_from_json(const Json& j, const std::string& where) {
  LoaderState s;
  s.epoch = json_int(j, "epoch", where, 0);
  s.consumed_samples = json_int(j, "consumed_samples", where, 0);
  return s;
}

std::vector<int64_t> rank_sample_indices(int64_t num_samples, uint64_t seed, bool shuffle,
                                         const LoaderState& state, int64_t m, int rank, int world) {
  CST_CHECK(state.consumed_samples >= 0 && state.consumed_samples + m <= num_samples,
            "batch of " << m << " at " << state.consumed_samples << " outside " << num_samples << " samples");
  const int64_t lo = m * rank / world, hi = m * (rank + 1) / world;
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(hi - lo));
  const FeistelPermutation perm(static_cast<uint64_t>(num_samples),
                                mix(seed, static_cast<uint64_t>(state.epoch)));
  for (int64_t p = state.consumed_samples + lo; p < state.consumed_samples + hi; ++p)
    out.push_back(shuffle ? static_cast<int64_t>(perm(static_cast<uint64_t>(p))) : p);
  return out;
}

Loader::Loader(std::shared_ptr<SampleSource> source, LoaderOptions opt, LoaderState start)
    : source_(std::move(source)), opt_(std::move(opt)), state_(start) {
  CST_CHECK(source_, "Loader needs a source");
  opt_.validate();
  CST_INPUT_CHECK(samples_per_epoch() > 0, "the split holds " << source_->num_samples()
                                                              << " samples, fewer than one global batch of "
                                                              << opt_.global_batch);
  CST_INPUT_CHECK(start.epoch >= 0 && start.consumed_samples >= 0 &&
                      start.consumed_samples <= samples_per_epoch(),
                  "loader state (epoch " << start.epoch << ", consumed_samples " << start.consumed_samples
                                         << ") outside an epoch of " << samples_per_epoch() << " samples");
  if (opt_.train && state_.consumed_samples + opt_.global_batch > source_->num_samples())
    state_ = {state_.epoch + 1, 0};  // a state saved at the end of an epoch
  if (source_->kind() == SampleKind::kMlm && !source_->static_masks())
    CST_INPUT_CHECK(source_->special().mask >= 0, "MLM shards without a [MASK] token id (mask_id < 0)");
  thread_ = std::thread([this, from = state_] { produce(from); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

int64_t Loader::samples_per_epoch() const {
  const int64_t n = source_->num_samples();
  return opt_.train ? n / opt_.global_batch * opt_.global_batch : n;
}

Batch Loader::make_batch(const LoaderState& s) const {
  const int64_t n = source_->num_samples(), g = opt_.global_batch;
  Batch b;
  b.global_rows = opt_.train ? g : std::min(g, n - s.consumed_samples);
  b.sample_index = rank_sample_indices(n, opt_.seed, opt_.train, s, b.global_rows, opt_.rank,
                                       opt_.world_size);
  b.rows = static_cast<int64_t>(b.sample_index.size());
  b.cols = source_->sample_len();
  b.state_after = {s.epoch, s.consumed_samples + b.global_rows};
  if (opt_.train && b.state_after.consumed_samples + g > n) b.state_after = {s.epoch + 1, 0};
  const size_t cells = static_cast<size_t>(b.rows * b.cols);
  const bool mlm = source_->kind() == SampleKind::kMlm;
  b.input_ids.resize(cells);
  if (mlm) {
    b.attention_mask.resize(cells);
    b.segment_ids.resize(cells);
    b.labels.resize(cells);
    b.next_sentence_labels.resize(static_cast<size_t>(b.rows));
  }
  for (int64_t i = 0; i < b.rows; ++i) {
    const size_t at = static_cast<size_t>(i * b.cols);
    SampleRow row{b.input_ids.data() + at};
    if (mlm)
      row = {row.input_ids, b.attention_mask.data() + at, b.segment_ids.data() + at,
             b.labels.data() + at, b.next_sentence_labels.data() + i};
    source_->read(b.sample_index[static_cast<size_t>(i)], row);
    if (mlm && !source_->static_masks())
      apply_mlm_masking(row.input_ids, row.attention_mask, row.labels, b.cols, source_->special(),
                        source_->vocab_size(), opt_.masking, opt_.seed, s.epoch,
                        b.sample_index[static_cast<size_t>(i)]);
  }
  return b;
}

void Loader::produce(LoaderState s) {
  try {
    while (true) {
      std::optional<Batch> item;
      if (opt_.train || s.consumed_samples < source_->num_samples()) {
        item = make_batch(s);
        s = item->state_after;
      }
      const bool end = !item;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || static_cast<int>(queue_.size()) < opt_.prefetch; });
        if (stop_) return;
        queue_.push_back(std::move(item));
      }
      cv_.notify_all();
      if (end) return;
    }
  } catch (...) {
    std::lock_guard<std::mutex> lk(mu_);
    error_ = std::current_exception();
  }
  cv_.notify_all();
}

std::optional<Batch> Loader::next() {
  std::unique_lock<std::mutex> lk(mu_);
  // A finished evaluation pass leaves a nullopt at the front for every later call.
  if (!queue_.empty() && !queue_.front()) return std::nullopt;
  cv_.wait(lk, [&] { return !queue_.empty() || error_; });
  if (queue_.empty()) std::rethrow_exception(error_);  // batches read before the error come first
  if (!queue_.front()) return std::nullopt;
  std::optional<Batch> item = std::move(queue_.front());
  queue_.pop_front();
  lk.unlock();
  cv_.notify_all();
  state_ = item->state_after;
  return item;
}

}  // namespace cst::dataio
