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

void LoaderOptions::place(const ParallelLayout& layout) { rank = layout.dp_rank(), world_size = layout.dp_size(); }

namespace {
// The positions [first, second) of a global batch of m that rank `rank` of `world` takes.
std::pair<int64_t, int64_t> rank_range(int64_t m, int rank, int world) {
  return {m * rank / world, m * (rank + 1) / world};
}
}  // namespace

std::vector<int64_t> rank_sample_indices(int64_t num_samples, uint64_t seed, bool shuffle, const LoaderState& state,
                                         int64_t m, int rank, int world) {
  CST_CHECK(state.consumed_samples >= 0 && state.consumed_samples + m <= num_samples,
            "batch of " << m << " at " << state.consumed_samples << " outside " << num_samples << " samples");
  const auto [lo, hi] = rank_range(m, rank, world);
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(hi - lo));
  const FeistelPermutation perm(static_cast<uint64_t>(num_samples), mix(seed, static_cast<uint64_t>(state.epoch)));
  for (int64_t p = state.consumed_samples + lo; p < state.consumed_samples + hi; ++p)
    out.push_back(shuffle ? static_cast<int64_t>(perm(static_cast<uint64_t>(p))) : p);
  return out;
}

Loader::Loader(std::shared_ptr<SampleSource> source, LoaderOptions opt, LoaderState start)
    : source_(std::move(source)), opt_(std::move(opt)), state_(std::move(start)) {
  CST_CHECK(source_, "Loader needs a source");
  opt_.validate();
  if (auto b = std::dynamic_pointer_cast<BlendSource>(source_); b && b->num_corpora() > 1) {
    blend_ = std::move(b);
    schedule_.emplace(blend_->spec().weights(), blend_->corpus_samples(), opt_.seed);
    fresh_ = initial_state(*source_);
  }
  if (blend_) {
    if (state_ == LoaderState{}) state_ = fresh_;
    check_blend_start(state_);
    if (opt_.train) state_ = blend_state(state_.consumed_samples);
  } else {
    CST_INPUT_CHECK(state_.corpora.empty(), "loader state of a blend of "
                                                << state_.corpora.size()
                                                << " corpora, but the loader reads one corpus ('" << source_->origin()
                                                << "')");
    CST_INPUT_CHECK(samples_per_epoch() > 0, "the split holds " << source_->num_samples()
                                                                << " samples, fewer than one global batch of "
                                                                << opt_.global_batch);
    CST_INPUT_CHECK(state_.epoch >= 0 && state_.consumed_samples >= 0 && state_.consumed_samples <= samples_per_epoch(),
                    "loader state (epoch " << state_.epoch << ", consumed_samples " << state_.consumed_samples
                                           << ") outside an epoch of " << samples_per_epoch() << " samples");
    if (opt_.train && state_.consumed_samples + opt_.global_batch > source_->num_samples())
      state_ = {state_.epoch + 1, 0};  // a state saved at the end of an epoch
  }
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

int64_t Loader::eval_limit(int64_t n) const {
  return opt_.eval_batches > 0 ? std::min(n, opt_.eval_batches * opt_.global_batch) : n;
}

int64_t Loader::samples_per_epoch() const {
  const int64_t n = source_->num_samples();
  if (blend_) return n;
  return opt_.train ? n / opt_.global_batch * opt_.global_batch : eval_limit(n);
}

void Loader::check_blend_start(const LoaderState& start) const {
  const std::string diff = blend_difference(start, fresh_);
  CST_INPUT_CHECK(diff.empty(), "loader state does not fit this loader: " << diff);
  CST_INPUT_CHECK(start.epoch == 0 && start.consumed_samples >= 0,
                  "blend loader state: epoch " << start.epoch << ", consumed_samples " << start.consumed_samples
                                               << " (expected epoch 0, consumed_samples >= 0)");
  if (!opt_.train) {
    for (size_t j = 0; j < start.corpora.size(); ++j)
      CST_INPUT_CHECK(start.corpora[j].epoch == 0 && start.corpora[j].consumed_samples >= 0 &&
                          start.corpora[j].consumed_samples <= start.corpora[j].samples,
                      "evaluation state of corpus " << j << " ('" << start.corpora[j].path << "'): epoch "
                                                    << start.corpora[j].epoch << ", consumed_samples "
                                                    << start.corpora[j].consumed_samples);
    return;
  }
  const LoaderState want = blend_state(start.consumed_samples);
  for (size_t j = 0; j < want.corpora.size(); ++j) {
    const CorpusState &a = start.corpora[j], &b = want.corpora[j];
    CST_INPUT_CHECK(a.epoch == b.epoch && a.consumed_samples == b.consumed_samples,
                    "blend loader state at consumed_samples "
                        << start.consumed_samples << ": corpus " << j << " ('" << a.path << "') at epoch " << a.epoch
                        << ", consumed_samples " << a.consumed_samples << ", but the schedule (seed " << opt_.seed
                        << ") puts it at epoch " << b.epoch << ", consumed_samples " << b.consumed_samples);
  }
}

LoaderState Loader::blend_state(int64_t position) const {
  LoaderState s = fresh_;
  s.consumed_samples = position;
  const std::vector<int64_t> c = schedule_->counts(position);
  for (size_t j = 0; j < c.size(); ++j) {
    s.corpora[j].epoch = c[j] / s.corpora[j].samples;
    s.corpora[j].consumed_samples = c[j] % s.corpora[j].samples;
  }
  return s;
}

bool Loader::finished(const LoaderState& s) const {
  if (opt_.train) return false;
  if (!blend_) return s.consumed_samples >= eval_limit(source_->num_samples());
  for (const CorpusState& c : s.corpora)
    if (c.consumed_samples < eval_limit(c.samples)) return false;
  return true;
}

Batch Loader::make_batch(const LoaderState& s) const {
  if (blend_) return make_blend_batch(s);
  const int64_t n = source_->num_samples(), g = opt_.global_batch;
  Batch b;
  b.global_rows = opt_.train ? g : std::min(g, eval_limit(n) - s.consumed_samples);
  b.sample_index = rank_sample_indices(n, opt_.seed, opt_.train, s, b.global_rows, opt_.rank, opt_.world_size);
  b.corpus.assign(b.sample_index.size(), 0);
  b.state_after = {s.epoch, s.consumed_samples + b.global_rows};
  if (opt_.train && b.state_after.consumed_samples + g > n) b.state_after = {s.epoch + 1, 0};
  read_rows(b, std::vector<int64_t>(b.sample_index.size(), s.epoch));
  return b;
}

Batch Loader::make_blend_batch(const LoaderState& s) const {
  const int64_t g = opt_.global_batch;
  Batch b;
  std::vector<int64_t> epochs;
  if (opt_.train) {
    b.global_rows = g;
    const auto [lo, hi] = rank_range(g, opt_.rank, opt_.world_size);
    for (int64_t p = s.consumed_samples + lo; p < s.consumed_samples + hi; ++p) {
      const BlendDraw d = schedule_->draw(p);
      b.sample_index.push_back(blend_->start(d.corpus) + d.sample);
      b.corpus.push_back(d.corpus);
      epochs.push_back(d.epoch);
    }
    b.state_after = blend_state(s.consumed_samples + g);
  } else {  // the first corpus not yet evaluated, sequentially
    size_t j = 0;
    while (s.corpora[j].consumed_samples >= eval_limit(s.corpora[j].samples)) ++j;
    const int64_t done = s.corpora[j].consumed_samples;
    b.global_rows = std::min(g, eval_limit(s.corpora[j].samples) - done);
    const auto [lo, hi] = rank_range(b.global_rows, opt_.rank, opt_.world_size);
    for (int64_t p = done + lo; p < done + hi; ++p) {
      b.sample_index.push_back(blend_->start(static_cast<int>(j)) + p);
      b.corpus.push_back(static_cast<int32_t>(j));
    }
    epochs.assign(b.sample_index.size(), 0);
    b.state_after = s;
    b.state_after.consumed_samples += b.global_rows;
    b.state_after.corpora[j].consumed_samples += b.global_rows;
  }
  read_rows(b, epochs);
  return b;
}

void Loader::read_rows(Batch& b, const std::vector<int64_t>& epochs) const {
  b.rows = static_cast<int64_t>(b.sample_index.size());
  b.cols = source_->sample_len();
  const size_t cells = static_cast<size_t>(b.rows * b.cols);
  const bool mlm = source_->kind() == SampleKind::kMlm, cls = source_->kind() == SampleKind::kCls;
  const size_t rows = static_cast<size_t>(b.rows);
  b.input_ids.resize(cells);
  if (mlm || cls) {
    b.attention_mask.resize(cells);
    b.segment_ids.resize(cells);
  }
  if (mlm) {
    b.labels.resize(cells);
    b.next_sentence_labels.resize(rows);
  }
  if (cls) {
    b.class_labels.resize(rows);
    b.targets.resize(rows);
    b.example_index.resize(rows);
  }
  for (int64_t i = 0; i < b.rows; ++i) {
    const size_t at = static_cast<size_t>(i * b.cols);
    SampleRow row{b.input_ids.data() + at};
    if (mlm)
      row = {row.input_ids, b.attention_mask.data() + at, b.segment_ids.data() + at, b.labels.data() + at,
             b.next_sentence_labels.data() + i};
    if (cls)
      row = {row.input_ids, b.attention_mask.data() + at, b.segment_ids.data() + at, nullptr,
             nullptr,       b.class_labels.data() + i,    b.targets.data() + i,      b.example_index.data() + i};
    const int64_t index = b.sample_index[static_cast<size_t>(i)];
    source_->read(index, row);
    if (mlm && !source_->static_masks())
      apply_mlm_masking(row.input_ids, row.attention_mask, row.labels, b.cols, source_->special(),
                        source_->vocab_size(), opt_.masking, opt_.seed, epochs[static_cast<size_t>(i)], index);
  }
}

void Loader::produce(LoaderState s) {
  try {
    while (true) {
      std::optional<Batch> item;
      if (!finished(s)) {
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
