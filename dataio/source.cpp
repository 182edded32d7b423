#include "dataio/source.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "common/error.h"
#include "dataio/shard_checks.h"

namespace cst::dataio {
namespace fs = std::filesystem;
using detail::expect;
using detail::expect_shape;
using h5::DType;

const char* to_string(SampleKind k) {
  return k == SampleKind::kLm ? "LM" : k == SampleKind::kMlm ? "MLM" : "classification";
}

std::vector<std::string> list_shards(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return {path};
  CST_INPUT_CHECK(fs::is_directory(path, ec), "shard path '" << path << "' does not exist");
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(path))
    if (e.is_regular_file() && e.path().extension() == ".h5") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  CST_INPUT_CHECK(!out.empty(), "no *.h5 shard files in folder '" << path << "'");
  return out;
}

namespace detail {

h5::Dataset expect(const h5::File& f, const std::string& name, std::vector<DType> dtypes, size_t rank) {
  h5::Dataset d = f.open(name);
  DType t = d.dtype();
  if (std::find(dtypes.begin(), dtypes.end(), t) == dtypes.end()) {
    std::string want;
    for (DType w : dtypes) want += std::string(want.empty() ? "" : " or ") + h5::dtype_name(w);
    CST_THROW_INPUT("HDF5 file '" << f.path() << "' dataset '" << name << "': dtype " << h5::dtype_name(t)
                                  << ", expected " << want);
  }
  CST_INPUT_CHECK(d.shape().size() == rank, "HDF5 file '" << f.path() << "' dataset '" << name << "': shape "
                                                          << h5::shape_str(d.shape()) << ", expected rank " << rank);
  return d;
}

void expect_shape(const h5::Dataset& d, const std::vector<int64_t>& shape) {
  CST_INPUT_CHECK(d.shape() == shape, "HDF5 file '" << d.file() << "' dataset '" << d.name() << "': shape "
                                                    << h5::shape_str(d.shape()) << ", expected "
                                                    << h5::shape_str(shape));
}

}  // namespace detail

namespace {

const std::vector<DType> kMaskTypes{DType::kInt8, DType::kUInt8};

// doc_offsets [D] of a shard of t tokens: 0 first, t last, never decreasing. Read in chunks:
// D comes from the file and may be large.
void check_doc_offsets(const h5::Dataset& offsets, int64_t t) {
  const int64_t d = offsets.shape()[0];
  constexpr int64_t kChunk = 1 << 16;
  std::vector<int64_t> buf(static_cast<size_t>(std::min(d, kChunk)));
  int64_t prev = 0;
  for (int64_t at = 0; at < d; at += kChunk) {
    const int64_t n = std::min(kChunk, d - at);
    offsets.read_slab<int64_t>({at}, {n}, buf.data());
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = buf[static_cast<size_t>(i)], index = at + i;
      const char* why = index == 0 && v != 0       ? "expected 0"
                        : v < prev                 ? "smaller than the entry before it (offsets never decrease)"
                        : v > t                    ? "beyond the number of tokens"
                        : index == d - 1 && v != t ? "expected the number of tokens"
                                                   : nullptr;
      CST_INPUT_CHECK(why == nullptr, "HDF5 file '" << offsets.file() << "' dataset 'doc_offsets' index " << index
                                                    << ": value " << v << ", " << why << " (previous " << prev
                                                    << ", tokens " << t << ")");
      prev = v;
    }
  }
}

}  // namespace

struct Hdf5Source::Scan {
  bool nvidia = false;
  ShardMeta meta;
  int64_t samples = 0, seq = 0, positions = 0;  // seq: MLM, CLS S; positions: NVIDIA P
  ClsMeta cls;
};

struct Hdf5Source::Open {
  size_t shard;
  h5::File file;
  std::vector<h5::Dataset> ds;  // LM: tokens; MLM: ids, mask, seg [, positions, mlm_ids, nsp]
};

Hdf5Source::Scan Hdf5Source::scan(const std::string& path) const {
  h5::File f(path, h5::File::Mode::kRead);
  Scan s;
  if (!f.has_attr("format")) {
    CST_INPUT_CHECK(f.has("masked_lm_positions"),
                    "HDF5 file '" << path << "': no 'format' attribute and no dataset "
                                  << "'masked_lm_positions': neither a cst-train nor an NVIDIA BERT shard");
    s.nvidia = true;
    s.meta.format = "nvidia-bert";
  } else {
    s.meta.format = f.attr_string("format");
    s.meta.version = f.attr_int("format_version");
    CST_INPUT_CHECK(s.meta.format == kLmFormat || s.meta.format == kMlmFormat || s.meta.format == kClsFormat,
                    "HDF5 file '" << path << "': unknown format '" << s.meta.format << "'");
    CST_INPUT_CHECK(s.meta.version >= 1 && s.meta.version <= kFormatVersion,
                    "HDF5 file '" << path << "': format_version " << s.meta.version
                                  << " not supported (this build reads 1.." << kFormatVersion << ")");
    s.meta.vocab_size = f.attr_int("vocab_size");
    CST_INPUT_CHECK(s.meta.vocab_size > 0, "HDF5 file '" << path << "': vocab_size " << s.meta.vocab_size << " <= 0");
    s.meta.tokenizer_sha256 = f.attr_string("tokenizer_sha256");
    SpecialTokens& sp = s.meta.special;
    sp.pad = static_cast<int32_t>(f.attr_int("pad_id"));
    sp.unk = static_cast<int32_t>(f.attr_int("unk_id"));
    sp.cls = static_cast<int32_t>(f.attr_int("cls_id"));
    sp.sep = static_cast<int32_t>(f.attr_int("sep_id"));
    sp.mask = static_cast<int32_t>(f.attr_int("mask_id"));
  }
  const bool lm = s.meta.format == kLmFormat;
  const SampleKind kind = lm ? SampleKind::kLm : s.meta.format == kClsFormat ? SampleKind::kCls : SampleKind::kMlm;
  CST_INPUT_CHECK(kind == opt_.kind, "HDF5 file '" << path << "': format '" << s.meta.format << "' but the task needs "
                                                   << to_string(opt_.kind) << " shards");
  if (kind == SampleKind::kCls) {
    const detail::ClsShard c = detail::scan_cls_shard(f, kMaxSampleLen);
    s.samples = c.rows, s.seq = c.seq, s.cls = c.meta;
    return s;
  }
  if (lm) {
    h5::Dataset tokens = expect(f, "tokens", {DType::kUInt16, DType::kInt32}, 1);
    h5::Dataset offsets = expect(f, "doc_offsets", {DType::kInt64}, 1);
    const int64_t t = tokens.shape()[0], d = offsets.shape()[0];
    CST_INPUT_CHECK(t > 0, "HDF5 file '" << path << "' dataset 'tokens': empty shard (0 tokens)");
    CST_INPUT_CHECK(d >= 2, "HDF5 file '" << path << "' dataset 'doc_offsets': " << d << " entries, expected >= 2");
    tokens.check_stored();
    offsets.check_stored();
    check_doc_offsets(offsets, t);
    s.samples = t / (opt_.seq_len + 1);
    return s;
  }
  const auto int32 = std::vector<DType>{DType::kInt32};
  h5::Dataset ids = expect(f, "input_ids", int32, 2);
  const std::vector<int64_t> shape = ids.shape();
  CST_INPUT_CHECK(shape[0] > 0, "HDF5 file '" << path << "' dataset 'input_ids': empty shard (0 rows)");
  CST_INPUT_CHECK(shape[1] >= 1 && shape[1] <= kMaxSampleLen,
                  "HDF5 file '" << path << "' dataset 'input_ids': " << shape[1] << " tokens per row, expected 1 to "
                                << kMaxSampleLen);
  ids.check_stored();
  for (const char* name : {"input_mask", "segment_ids"}) {
    h5::Dataset d = expect(f, name, s.nvidia ? std::vector<DType>{DType::kInt8} : kMaskTypes, 2);
    expect_shape(d, shape);
    d.check_stored();
  }
  s.samples = shape[0];
  s.seq = shape[1];
  if (s.nvidia) {
    h5::Dataset pos = expect(f, "masked_lm_positions", int32, 2);
    CST_INPUT_CHECK(pos.shape()[0] == shape[0], "HDF5 file '" << path << "' dataset 'masked_lm_positions': shape "
                                                              << h5::shape_str(pos.shape()) << ", expected " << shape[0]
                                                              << " rows");
    s.positions = pos.shape()[1];
    CST_INPUT_CHECK(s.positions <= shape[1], "HDF5 file '" << path << "' dataset 'masked_lm_positions': " << s.positions
                                                           << " positions per row, more than the " << shape[1]
                                                           << " tokens of a row");
    pos.check_stored();
    h5::Dataset mlm_ids = expect(f, "masked_lm_ids", int32, 2),
                nsp = expect(f, "next_sentence_labels", {DType::kInt8}, 1);
    expect_shape(mlm_ids, pos.shape());
    expect_shape(nsp, {shape[0]});
    mlm_ids.check_stored();
    nsp.check_stored();
  }
  return s;
}

Hdf5Source::Hdf5Source(std::vector<std::string> files, SourceOptions opt)
    : files_(std::move(files)), opt_(std::move(opt)) {
  CST_INPUT_CHECK(!files_.empty(), "no shard files given");
  CST_CHECK(opt_.kind != SampleKind::kLm || opt_.seq_len > 0, "LM source needs seq_len > 0");
  CST_CHECK(opt_.max_open_files >= 1, "max_open_files must be >= 1");
  auto lock = h5::lock_library();
  starts_.push_back(0);
  Scan first;
  for (size_t i = 0; i < files_.size(); ++i) {
    Scan s = scan(files_[i]);
    const std::string& f = files_[i];
    if (i == 0) {
      first = s;
    } else {
      CST_INPUT_CHECK(s.nvidia == first.nvidia && s.meta.format == first.meta.format,
                      "HDF5 file '" << f << "': format '" << s.meta.format << "' differs from '" << files_[0] << "' ('"
                                    << first.meta.format << "')");
      CST_INPUT_CHECK(s.meta.vocab_size == first.meta.vocab_size,
                      "HDF5 file '" << f << "': vocab_size " << s.meta.vocab_size << " differs from '" << files_[0]
                                    << "' (" << first.meta.vocab_size << ")");
      CST_INPUT_CHECK(s.meta.tokenizer_sha256 == first.meta.tokenizer_sha256,
                      "HDF5 file '" << f << "': tokenizer_sha256 " << s.meta.tokenizer_sha256 << " differs from '"
                                    << files_[0] << "' (" << first.meta.tokenizer_sha256 << ")");
      CST_INPUT_CHECK(s.cls.task == first.cls.task && s.cls.num_classes == first.cls.num_classes &&
                          s.cls.label_names == first.cls.label_names,
                      "HDF5 file '" << f << "': task '" << s.cls.task << "' with " << s.cls.num_classes
                                    << " classes differs from '" << files_[0] << "' (task '" << first.cls.task << "', "
                                    << first.cls.num_classes << " classes, label names in the same order)");
      CST_INPUT_CHECK(s.seq == first.seq && s.positions == first.positions,
                      "HDF5 file '" << f << "' dataset 'input_ids': sequence length " << s.seq << " differs from '"
                                    << files_[0] << "' (" << first.seq << ")");
    }
    starts_.push_back(starts_.back() + s.samples);
  }
  nvidia_ = first.nvidia;
  nvidia_positions_ = first.positions;
  special_ = first.meta.special;
  tokenizer_sha256_ = first.meta.tokenizer_sha256;
  cls_ = first.cls;
  CST_INPUT_CHECK(opt_.kind != SampleKind::kCls || opt_.num_classes == 0 || opt_.num_classes == cls_.num_classes,
                  "HDF5 file '" << files_[0] << "': num_classes " << cls_.num_classes << " (task '" << cls_.task
                                << "') but the model config has num_classes " << opt_.num_classes
                                << " (1 = regression)");
  sample_len_ = opt_.kind == SampleKind::kLm ? opt_.seq_len + 1 : first.seq;
  if (nvidia_) {
    CST_INPUT_CHECK(opt_.vocab_size > 0, "NVIDIA BERT shards ('" << files_[0] << "') carry no vocab "
                                                                 << "size: the model config must give one");
    vocab_size_ = opt_.vocab_size;
  } else {
    vocab_size_ = first.meta.vocab_size;
    CST_INPUT_CHECK(opt_.vocab_size == 0 || opt_.vocab_size == vocab_size_,
                    "HDF5 file '" << files_[0] << "': vocab_size " << vocab_size_
                                  << " but the model config has vocab_size " << opt_.vocab_size);
    CST_INPUT_CHECK(opt_.tokenizer_sha256.empty() || opt_.tokenizer_sha256 == first.meta.tokenizer_sha256,
                    "HDF5 file '" << files_[0] << "': tokenizer_sha256 " << first.meta.tokenizer_sha256
                                  << " but the model's tokenizer has sha256 " << opt_.tokenizer_sha256);
  }
  CST_INPUT_CHECK(opt_.kind == SampleKind::kLm || opt_.seq_len == 0 || opt_.seq_len == sample_len_,
                  "HDF5 file '" << files_[0] << "' dataset 'input_ids': sequence length " << sample_len_
                                << " but the model config needs " << opt_.seq_len);
  CST_INPUT_CHECK(num_samples() > 0, "shards starting with '" << files_[0] << "' hold no sample: every "
                                                              << "shard is shorter than one window of " << sample_len_
                                                              << " tokens");
}

Hdf5Source::~Hdf5Source() {
  auto lock = h5::lock_library();
  open_.clear();
}

Hdf5Source::Open& Hdf5Source::open(size_t shard) {
  for (auto it = open_.begin(); it != open_.end(); ++it) {
    if ((*it)->shard != shard) continue;
    open_.splice(open_.begin(), open_, it);
    return *open_.front();
  }
  if (static_cast<int>(open_.size()) >= opt_.max_open_files) open_.pop_back();
  h5::File f(files_[shard], h5::File::Mode::kRead);
  std::vector<h5::Dataset> ds;
  if (opt_.kind == SampleKind::kLm) {
    ds.push_back(f.open("tokens"));
  } else if (opt_.kind == SampleKind::kCls) {
    for (const char* n : {"input_ids", "attention_mask", "segment_ids", "labels", "example_index"})
      ds.push_back(f.open(n));
  } else {
    for (const char* n : {"input_ids", "input_mask", "segment_ids"}) ds.push_back(f.open(n));
    if (nvidia_)
      for (const char* n : {"masked_lm_positions", "masked_lm_ids", "next_sentence_labels"}) ds.push_back(f.open(n));
  }
  open_.push_front(std::make_unique<Open>(Open{shard, std::move(f), std::move(ds)}));
  return *open_.front();
}

void Hdf5Source::check_ids(const Open& o, const char* dataset, int64_t first, const int32_t* ids, int64_t n) const {
  for (int64_t i = 0; i < n; ++i) {
    CST_INPUT_CHECK(ids[i] >= 0 && ids[i] < vocab_size_,
                    "HDF5 file '" << files_[o.shard] << "' dataset '" << dataset << "' index " << first + i
                                  << ": token id " << ids[i] << " outside [0, vocab size " << vocab_size_ << ")");
  }
}

void Hdf5Source::read(int64_t index, const SampleRow& out) {
  CST_CHECK(index >= 0 && index < num_samples(), "sample " << index << " outside [0, " << num_samples() << ")");
  const size_t shard =
      static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), index) - starts_.begin() - 1);
  auto lock = h5::lock_library();
  Open& o = open(shard);
  const int64_t local = index - starts_[shard];
  if (opt_.kind == SampleKind::kLm)
    read_lm(o, local, out);
  else if (opt_.kind == SampleKind::kCls)
    read_cls(o, local, out);
  else
    read_mlm(o, local, out);
}

void Hdf5Source::read_lm(Open& o, int64_t local, const SampleRow& out) {
  const int64_t first = local * sample_len_;
  o.ds[0].read_slab<int32_t>({first}, {sample_len_}, out.input_ids);
  check_ids(o, "tokens", first, out.input_ids, sample_len_);
}

void Hdf5Source::read_tokens(Open& o, int64_t row, const SampleRow& out) {
  const int64_t s = sample_len_;
  o.ds[0].read_slab<int32_t>({row, 0}, {1, s}, out.input_ids);
  check_ids(o, "input_ids", row * s, out.input_ids, s);
  o.ds[1].read_slab<uint8_t>({row, 0}, {1, s}, out.attention_mask);
  o.ds[2].read_slab<uint8_t>({row, 0}, {1, s}, out.segment_ids);
}

void Hdf5Source::read_mlm(Open& o, int64_t row, const SampleRow& out) {
  const int64_t s = sample_len_;
  read_tokens(o, row, out);
  std::fill(out.labels, out.labels + s, -100);
  *out.next_sentence_label = -1;
  if (!nvidia_) return;
  // NVIDIA's static masks: positions padded with 0 after the last prediction ([CLS] at
  // position 0 is never predicted), as their own loader reads them.
  const int64_t p = nvidia_positions_;
  std::vector<int32_t> pos(static_cast<size_t>(p)), ids(static_cast<size_t>(p));
  o.ds[3].read_slab<int32_t>({row, 0}, {1, p}, pos.data());
  o.ds[4].read_slab<int32_t>({row, 0}, {1, p}, ids.data());
  o.ds[5].read_slab<int8_t>({row}, {1}, out.next_sentence_label);
  check_ids(o, "masked_lm_ids", row * p, ids.data(), p);
  for (int64_t j = 0; j < p && pos[j] != 0; ++j) {
    CST_INPUT_CHECK(pos[j] > 0 && pos[j] < s, "HDF5 file '" << files_[o.shard] << "' dataset "
                                                            << "'masked_lm_positions' index " << row * p + j
                                                            << ": position " << pos[j] << " outside [1, " << s << ")");
    out.labels[pos[j]] = ids[j];
  }
}

void Hdf5Source::read_cls(Open& o, int64_t row, const SampleRow& out) {
  read_tokens(o, row, out);
  *out.class_label = -1;
  *out.target = std::nanf("");
  if (cls_.num_classes == 1)
    o.ds[3].read_slab<float>({row}, {1}, out.target);
  else
    o.ds[3].read_slab<int64_t>({row}, {1}, out.class_label);
  o.ds[4].read_slab<int64_t>({row}, {1}, out.example_index);
}

// ---------------------------------------------------------------------------------------------
MemoryLmSource::MemoryLmSource(std::vector<int32_t> tokens, int64_t seq_len, int64_t vocab_size)
    : tokens_(std::move(tokens)), seq_len_(seq_len), vocab_size_(vocab_size) {
  CST_CHECK(seq_len_ > 0 && num_samples() > 0,
            "MemoryLmSource: " << tokens_.size() << " tokens hold no window of " << seq_len_ + 1);
}

int64_t MemoryLmSource::num_samples() const { return static_cast<int64_t>(tokens_.size()) / (seq_len_ + 1); }

void MemoryLmSource::read(int64_t index, const SampleRow& out) {
  CST_CHECK(index >= 0 && index < num_samples(), "sample " << index << " outside [0, " << num_samples() << ")");
  const int64_t first = index * (seq_len_ + 1);
  for (int64_t i = 0; i <= seq_len_; ++i) {
    const int32_t id = tokens_[static_cast<size_t>(first + i)];
    CST_INPUT_CHECK(id >= 0 && id < vocab_size_, "in-memory tokens index " << first + i << ": token id " << id
                                                                           << " outside [0, vocab size " << vocab_size_
                                                                           << ")");
    out.input_ids[i] = id;
  }
}

}  // namespace cst::dataio
