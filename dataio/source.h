// Sample sources: one global index space of samples over all shards of a split.
//
//   LM  : sample i is a window of N+1 tokens. Each shard's token stream is cut into
//         floor(T / (N+1)) non-overlapping windows starting at token 0 of the shard; windows
//         cross document boundaries inside a shard (documents end with the tokenizer's </s>)
//         but never shard boundaries; each shard's tail of < N+1 tokens is not used.
//         Inputs are window[0:N], targets window[1:N+1].
//   MLM : sample i is a row. Shards are numbered in the order given (list_shards sorts them)
//         and samples are numbered shard by shard.
//   CLS : sample i is an example (a row of a cst-cls-examples shard), numbered as MLM rows, with
//         its label and its example_index.
//
// A SampleSource is used by one thread at a time (the loader's prefetch thread); Hdf5Source
// holds h5::lock_library() around its HDF5 calls so that it may run next to other HDF5 users.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "common/h5.h"
#include "dataio/format.h"

namespace cst::dataio {

enum class SampleKind { kLm, kMlm, kCls };
const char* to_string(SampleKind k);  // "LM", "MLM", "classification"

// The longest MLM row a shard may hold (model::kMaxSeqLen): rows size the loader's buffers.
inline constexpr int64_t kMaxSampleLen = 16777216;

// Where read() puts one sample: pointers to sample_len() elements each (one batch row).
struct SampleRow {
  int32_t* input_ids = nullptr;           // LM and MLM
  uint8_t* attention_mask = nullptr;      // MLM: 1 = real token
  uint8_t* segment_ids = nullptr;         // MLM
  int32_t* labels = nullptr;              // MLM: static labels (NVIDIA), else all -100
  int8_t* next_sentence_label = nullptr;  // MLM: NVIDIA's label, else -1
  int64_t* class_label = nullptr;         // CLS: class id in [0, num_classes), -1 = no label (regression: -1)
  float* target = nullptr;                // CLS regression (num_classes = 1): target, NaN = no label; else NaN
  int64_t* example_index = nullptr;       // CLS: the example's index in its source split
};

class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual SampleKind kind() const = 0;
  virtual int64_t num_samples() const = 0;  // >= 1
  virtual int64_t sample_len() const = 0;   // LM: N+1; MLM: S
  virtual int64_t vocab_size() const = 0;   // every id read is < vocab_size (checked on read)
  virtual SpecialTokens special() const = 0;
  virtual bool static_masks() const = 0;  // true: labels come from the shards (NVIDIA)
  // The tokenizer the ids come from, as the shards record it ("" = not recorded), and what to
  // name in messages about this source (its first shard file).
  virtual std::string tokenizer_sha256() const { return ""; }
  virtual std::string origin() const = 0;
  // CLS: the task, num_classes and label names the shards declare (other kinds: ClsMeta{}).
  virtual ClsMeta cls_meta() const { return {}; }
  // Reads sample `index` (0 <= index < num_samples). Throws InputError naming file, dataset,
  // index and value on bad data. Not thread-safe.
  virtual void read(int64_t index, const SampleRow& out) = 0;
};

// What the caller (the model config) expects of the shards; mismatches are InputErrors.
struct SourceOptions {
  SampleKind kind = SampleKind::kLm;  // shards of another kind are rejected
  int64_t seq_len = 0;                // LM: N (> 0, windows of N+1); MLM, CLS: S (0 = take the shards')
  int64_t num_classes = 0;            // CLS: the model's num_classes (1 = regression); shards must match (0 = no check)
  int64_t vocab_size = 0;             // the model's vocabulary; shards must match (0 = no check)
  std::string tokenizer_sha256;       // the model's tokenizer; shards must match ("" = no check)
  int max_open_files = 64;            // HDF5 files kept open at once (least recently used closed)
};

// The shard files of a split: `path` itself if it is a file, else the *.h5 files directly in
// the folder, sorted by name. Throws InputError when there are none.
std::vector<std::string> list_shards(const std::string& path);

// Our LM/MLM/CLS shards or NVIDIA BERT shards, validated on construction (formats, versions,
// dtypes, ranks, shapes, attributes, agreement between shards and with `opt`; every doc_offsets
// entry, read in chunks; every dataset stored in full, h5::Dataset::check_stored, since shapes
// size the loader's work). Opens each file once to validate it; afterwards reads by hyperslab,
// one sample at a time (token ids are checked against vocab_size as they are read).
// Classification shards: also the task attributes (num_classes >= 1, label_names a JSON array of
// num_classes strings, [] for regression; shards agree on task, num_classes and label_names),
// every label (int64 in [0, num_classes) or -1; regression float32, finite or NaN) and every
// example_index (>= 0), read in full on open.
class Hdf5Source : public SampleSource {
 public:
  Hdf5Source(std::vector<std::string> files, SourceOptions opt);
  ~Hdf5Source() override;
  Hdf5Source(const Hdf5Source&) = delete;
  Hdf5Source& operator=(const Hdf5Source&) = delete;

  SampleKind kind() const override { return opt_.kind; }
  int64_t num_samples() const override { return starts_.back(); }
  int64_t sample_len() const override { return sample_len_; }
  int64_t vocab_size() const override { return vocab_size_; }
  SpecialTokens special() const override { return special_; }
  bool static_masks() const override { return nvidia_; }
  std::string tokenizer_sha256() const override { return tokenizer_sha256_; }
  std::string origin() const override { return files_[0]; }
  ClsMeta cls_meta() const override { return cls_; }
  void read(int64_t index, const SampleRow& out) override;
  const std::vector<std::string>& files() const { return files_; }

 private:
  struct Open;  // an open shard: file + datasets
  struct Scan;  // what validation learnt of a shard
  Scan scan(const std::string& file) const;
  Open& open(size_t shard);
  void read_lm(Open& o, int64_t local, const SampleRow& out);
  void read_mlm(Open& o, int64_t local, const SampleRow& out);
  void read_cls(Open& o, int64_t local, const SampleRow& out);
  void read_tokens(Open& o, int64_t row, const SampleRow& out);  // MLM / CLS: ids, mask, segments
  void check_ids(const Open& o, const char* dataset, int64_t first, const int32_t* ids, int64_t n) const;

  std::vector<std::string> files_;
  SourceOptions opt_;
  std::vector<int64_t> starts_;  // starts_[s] = first global index of shard s; back() = total
  int64_t sample_len_ = 0, vocab_size_ = 0, nvidia_positions_ = 0;
  bool nvidia_ = false;
  SpecialTokens special_;
  std::string tokenizer_sha256_;
  ClsMeta cls_;
  std::list<std::unique_ptr<Open>> open_;  // most recently used first
};

// An in-memory LM token stream (one shard), for tests and examples.
class MemoryLmSource : public SampleSource {
 public:
  MemoryLmSource(std::vector<int32_t> tokens, int64_t seq_len, int64_t vocab_size);
  SampleKind kind() const override { return SampleKind::kLm; }
  int64_t num_samples() const override;
  int64_t sample_len() const override { return seq_len_ + 1; }
  int64_t vocab_size() const override { return vocab_size_; }
  SpecialTokens special() const override { return {}; }
  bool static_masks() const override { return false; }
  std::string origin() const override { return "in-memory tokens"; }
  void read(int64_t index, const SampleRow& out) override;

 private:
  std::vector<int32_t> tokens_;
  int64_t seq_len_, vocab_size_;
};

}  // namespace cst::dataio
