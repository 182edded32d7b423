#include "dataio/prep.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "common/error.h"
#include "common/h5.h"
#include "common/output_folder.h"
#include "dataio/format.h"

namespace cst::dataio {
namespace fs = std::filesystem;

void PrepOptions::validate() const {
  CST_INPUT_CHECK(!input.empty(), "cst-prep: no input given");
  CST_INPUT_CHECK(!output.empty(), "cst-prep: no output folder given");
  CST_INPUT_CHECK(vocab_size >= 16, "vocab size " << vocab_size << " must be >= 16");
  CST_INPUT_CHECK(model_type == "unigram" || model_type == "bpe" || model_type == "char" ||
                      model_type == "word",
                  "tokenizer model type '" << model_type << "' (unigram, bpe, char, word)");
  CST_INPUT_CHECK(character_coverage > 0 && character_coverage <= 1,
                  "character coverage " << character_coverage << " outside (0, 1]");
  CST_INPUT_CHECK(spm_max_bytes > 0, "spm max bytes " << spm_max_bytes << " must be > 0");
  CST_INPUT_CHECK(task == SampleKind::kLm || seq_len >= 8, "MLM sequence length " << seq_len << " must be >= 8");
  CST_INPUT_CHECK(shard_tokens > 0 && shard_rows > 0, "shard sizes must be > 0");
  CST_INPUT_CHECK(valid_fraction >= 0 && test_fraction >= 0 && valid_fraction + test_fraction < 1,
                  "valid fraction " << valid_fraction << " + test fraction " << test_fraction
                                    << " must be in [0, 1)");
}

namespace {

using Clock = std::chrono::steady_clock;

// Prints "[cst-prep] <what>: 42.0% (12.3 of 29.3 MB) 4.1 MB/s, ETA 4s" at most every 2 s.
class Progress {
 public:
  Progress(std::string what, double total, const char* unit, bool on)
      : what_(std::move(what)), unit_(unit), total_(total), on_(on), start_(Clock::now()), last_(start_) {}
  void update(double done, bool final = false) {
    if (!on_) return;
    const auto now = Clock::now();
    if (!final && now - last_ < std::chrono::seconds(2)) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0 ? done / secs : 0, eta = rate > 0 ? (total_ - done) / rate : 0;
    std::fprintf(stderr, "[cst-prep] %s: %5.1f%% (%.1f of %.1f %s) %.1f %s/s, %s %.0fs\n", what_.c_str(),
                 total_ > 0 ? 100.0 * done / total_ : 100.0, done, total_, unit_, rate, unit_,
                 final ? "took" : "ETA", final ? secs : eta);
  }

 private:
  std::string what_;
  const char* unit_;
  double total_;
  bool on_;
  Clock::time_point start_, last_;
};

// Everything is written into the output folder's staging folder and moved into place at the
// end (common/output_folder.h); these are the staging paths.
constexpr char kTool[] = "cst-prep";
constexpr char kTokenizer[] = "tokenizer.model";
fs::path staging(const PrepOptions& opt) { return OutputFolder::staging_path(opt.output, kTool); }
std::string tokenizer_path(const PrepOptions& opt) { return (staging(opt) / kTokenizer).string(); }
std::string part_path(const PrepOptions& opt, int rank) {
  return (staging(opt) / "parts" / ("part-" + std::to_string(rank) + ".h5")).string();
}

// The paths cst-prep reads, which its output may not overlap.
std::vector<NamedPath> prep_inputs(const PrepOptions& opt) {
  return {{"--input", opt.input}, {"--tokenizer", opt.tokenizer}};
}

// Feeds SentencePiece's trainer from memory.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& lines) : lines_(lines) {}
  bool done() const override { return i_ >= lines_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return lines_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& lines_;
  size_t i_ = 0;
};

// Rank 0: trains a SentencePiece model on train-split text, or copies the given one.
void make_tokenizer(const PrepOptions& opt, const std::vector<InputFile>& files, InputFormat fmt) {
  const std::string out = tokenizer_path(opt);
  if (!opt.tokenizer.empty()) {
    std::error_code ec;
    CST_INPUT_CHECK(fs::is_regular_file(opt.tokenizer, ec), "tokenizer model '" << opt.tokenizer << "' not found");
    fs::copy_file(opt.tokenizer, out, fs::copy_options::overwrite_existing);
    return;
  }
  // Sentences are fed from memory and the model comes back serialised, so that the model
  // (and its sha256) does not record file paths: equal text and options, equal bytes.
  std::vector<std::string> lines;
  int64_t bytes = 0;
  for (size_t i = 0; i < files.size() && bytes < opt.spm_max_bytes; ++i) {
    int64_t doc = 0;
    read_documents(files[i], fmt, opt.jsonl_field, [&](std::string&& d) {
      if (assign_split(files[i], doc++, opt.valid_fraction, opt.test_fraction) != Split::kTrain) return;
      for (std::string& line : split_sentences(d)) {
        if (bytes >= opt.spm_max_bytes) return;
        bytes += static_cast<int64_t>(line.size()) + 1;
        lines.push_back(std::move(line));
      }
    });
  }
  CST_INPUT_CHECK(bytes > 0, "input '" << opt.input << "' has no text in its train split to train a tokenizer on");
  if (opt.progress)
    std::fprintf(stderr, "[cst-prep] training a %s tokenizer (vocab %lld) on %.1f MB of text\n",
                 opt.model_type.c_str(), static_cast<long long>(opt.vocab_size), static_cast<double>(bytes) / 1e6);
  LineIterator it(lines);
  sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned>(opt.seed));
  const std::unordered_map<std::string, std::string> args{
      {"vocab_size", std::to_string(opt.vocab_size)},
      {"model_type", opt.model_type},
      {"character_coverage", std::to_string(opt.character_coverage)},
      {"input_sentence_size", "2000000"},
      {"shuffle_input_sentence", "true"},
      {"hard_vocab_limit", "false"},
      {"num_threads", "1"},
      {"pad_id", "0"}, {"unk_id", "1"}, {"bos_id", "2"}, {"eos_id", "3"},
      {"control_symbols", "[MASK]"},
      {"minloglevel", "2"}};
  std::string model;
  const auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  CST_INPUT_CHECK(st.ok(), "training the tokenizer on '" << opt.input << "' failed: " << st.ToString());
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  f.write(model.data(), static_cast<std::streamsize>(model.size()));
  CST_INPUT_CHECK(f.good(), "cannot write tokenizer '" << out << "'");
}

SpecialTokens special_tokens(const sentencepiece::SentencePieceProcessor& sp) {
  SpecialTokens s;
  s.pad = sp.pad_id();
  s.unk = sp.unk_id();
  s.cls = sp.bos_id();
  s.sep = sp.eos_id();
  const int mask = sp.PieceToId("[MASK]");
  s.mask = mask != sp.unk_id() ? mask : -1;
  return s;
}

// Encodes documents into part items: LM one item per document (its tokens then </s>);
// MLM rows of S tokens "[CLS] sentences [SEP] [PAD]...", packing whole sentences of one
// document (a sentence longer than S-2 tokens is cut into pieces of S-2).
class Encoder {
 public:
  Encoder(const sentencepiece::SentencePieceProcessor& sp, const PrepOptions& opt)
      : sp_(sp), opt_(opt), special_(special_tokens(sp)) {}

  // Appends the items of one document; returns the number of items added.
  int64_t encode(const std::string& doc, std::vector<int32_t>& tokens, std::vector<int64_t>& lens) {
    if (opt_.task == SampleKind::kLm) {
      const size_t before = tokens.size();
      size_t pos = 0;
      while (pos < doc.size()) {
        size_t end = doc.find('\n', pos);
        if (end == std::string::npos) end = doc.size();
        if (doc.find_first_not_of(" \t\r", pos) < end) append(doc.substr(pos, end - pos), tokens);
        pos = end + 1;
      }
      if (tokens.size() == before) return 0;
      if (special_.sep >= 0) tokens.push_back(special_.sep);
      lens.push_back(static_cast<int64_t>(tokens.size() - before));
      return 1;
    }
    const int64_t room = opt_.seq_len - 2;
    std::vector<int32_t> row, sentence;
    int64_t rows = 0;
    auto emit = [&] {
      if (row.empty()) return;
      tokens.push_back(special_.cls);
      tokens.insert(tokens.end(), row.begin(), row.end());
      tokens.push_back(special_.sep);
      tokens.insert(tokens.end(), static_cast<size_t>(room - static_cast<int64_t>(row.size())), special_.pad);
      lens.push_back(opt_.seq_len);
      row.clear();
      ++rows;
    };
    for (const std::string& s : split_sentences(doc)) {
      sentence.clear();
      append(s, sentence);
      for (size_t at = 0; at < sentence.size(); at += static_cast<size_t>(room)) {
        const size_t n = std::min(sentence.size() - at, static_cast<size_t>(room));
        if (static_cast<int64_t>(row.size() + n) > room) emit();
        row.insert(row.end(), sentence.begin() + static_cast<std::ptrdiff_t>(at),
                   sentence.begin() + static_cast<std::ptrdiff_t>(at + n));
      }
    }
    emit();
    return rows;
  }

 private:
  void append(const std::string& text, std::vector<int32_t>& out) {
    ids_.clear();
    const auto st = sp_.Encode(text, &ids_);
    CST_CHECK(st.ok(), "SentencePiece encode failed: " << st.ToString());
    out.insert(out.end(), ids_.begin(), ids_.end());
  }
  const sentencepiece::SentencePieceProcessor& sp_;
  const PrepOptions& opt_;
  SpecialTokens special_;
  std::vector<int> ids_;
};

// Phase 1: this rank's files -> part file with datasets tokens (int32), item_len, item_file
// (int64) and item_split (int8); attribute docs_<split> counts documents.
void encode_part(const PrepOptions& opt, const PrepWorld& world, const std::vector<InputFile>& files,
                 InputFormat fmt, const sentencepiece::SentencePieceProcessor& sp) {
  h5::File part(part_path(opt, world.rank), h5::File::Mode::kCreate);
  part.create_extendible("tokens", h5::DType::kInt32, {}, {1 << 16});
  part.create_extendible("item_len", h5::DType::kInt64, {}, {4096});
  part.create_extendible("item_file", h5::DType::kInt64, {}, {4096});
  part.create_extendible("item_split", h5::DType::kInt8, {}, {4096});
  Encoder enc(sp, opt);
  std::vector<int32_t> tokens;
  std::vector<int64_t> lens, file_ids;
  std::vector<int8_t> splits;
  std::array<int64_t, kNumSplits> docs{};
  auto flush = [&] {
    part.append("tokens", tokens.data(), static_cast<int64_t>(tokens.size()));
    part.append("item_len", lens.data(), static_cast<int64_t>(lens.size()));
    part.append("item_file", file_ids.data(), static_cast<int64_t>(file_ids.size()));
    part.append("item_split", splits.data(), static_cast<int64_t>(splits.size()));
    tokens.clear(), lens.clear(), file_ids.clear(), splits.clear();
  };
  double total = 0, done = 0;
  for (size_t i = static_cast<size_t>(world.rank); i < files.size(); i += static_cast<size_t>(world.size))
    total += static_cast<double>(files[i].bytes) / 1e6;
  Progress progress("encode (rank 0's files)", total, "MB", opt.progress && world.rank == 0);
  for (size_t i = static_cast<size_t>(world.rank); i < files.size(); i += static_cast<size_t>(world.size)) {
    int64_t doc = 0;
    read_documents(files[i], fmt, opt.jsonl_field, [&](std::string&& d) {
      const Split split = assign_split(files[i], doc++, opt.valid_fraction, opt.test_fraction);
      const int64_t items = enc.encode(d, tokens, lens);
      if (items > 0) ++docs[static_cast<size_t>(split)];
      file_ids.insert(file_ids.end(), static_cast<size_t>(items), static_cast<int64_t>(i));
      splits.insert(splits.end(), static_cast<size_t>(items), static_cast<int8_t>(split));
      if (tokens.size() >= (1u << 22)) flush();
    });
    flush();
    done += static_cast<double>(files[i].bytes) / 1e6;
    progress.update(done);
  }
  progress.update(done, true);
  for (int s = 0; s < kNumSplits; ++s)
    part.set_attr(std::string("docs_") + split_name(static_cast<Split>(s)), docs[static_cast<size_t>(s)]);
}

// Phase 2 (rank 0): items in file order -> the shards of one split.
class ShardWriter {
 public:
  ShardWriter(const PrepOptions& opt, ShardMeta meta) : opt_(opt), meta_(std::move(meta)) {
    dir_ = staging(opt) / meta_.split;
  }
  void add(const int32_t* t, int64_t n) {
    tokens_.insert(tokens_.end(), t, t + n);
    ++items_;
    if (opt_.task == SampleKind::kLm) offsets_.push_back(static_cast<int64_t>(tokens_.size()));
    const bool full = opt_.task == SampleKind::kLm ? static_cast<int64_t>(tokens_.size()) >= opt_.shard_tokens
                                                   : items_ >= opt_.shard_rows;
    if (full) flush();
  }
  const std::vector<std::string>& written() const { return written_; }  // relative to the output
  // Writes the open shard if it holds anything. Returns the shards written so far.
  int64_t flush() {
    if (items_ == 0) return shards_;
    fs::create_directories(dir_);
    char name[32];
    std::snprintf(name, sizeof(name), "shard-%05lld.h5", static_cast<long long>(shards_));
    const std::string path = (dir_ / name).string();
    written_.push_back(meta_.split + "/" + name);
    if (opt_.task == SampleKind::kLm) {
      write_lm_shard(path, meta_, tokens_, offsets_);
    } else {
      std::vector<int8_t> mask(tokens_.size()), segments(tokens_.size(), 0);
      for (size_t i = 0; i < tokens_.size(); ++i) mask[i] = tokens_[i] != meta_.special.pad;
      write_mlm_shard(path, meta_, items_, opt_.seq_len, tokens_, mask, segments);
    }
    ++shards_;
    tokens_.clear();
    offsets_.assign(1, 0);
    items_ = 0;
    return shards_;
  }

 private:
  const PrepOptions& opt_;
  ShardMeta meta_;
  fs::path dir_;
  std::vector<int32_t> tokens_;
  std::vector<int64_t> offsets_{0};
  int64_t items_ = 0, shards_ = 0;
  std::vector<std::string> written_;
};

// One rank's part file, read back in order.
struct PartReader {
  h5::File file;
  h5::Dataset tokens;
  std::vector<int64_t> len, file_id;
  std::vector<int8_t> split;
  size_t item = 0;
  int64_t offset = 0;  // token offset of `item`
  explicit PartReader(const std::string& path)
      : file(path, h5::File::Mode::kRead), tokens(file.open("tokens")),
        len(file.open("item_len").read<int64_t>()), file_id(file.open("item_file").read<int64_t>()),
        split(file.open("item_split").read<int8_t>()) {}
};

// Returns the shards written, relative to the output folder.
std::vector<std::string> write_shards(const PrepOptions& opt, const PrepWorld& world, size_t num_files,
                                      ShardMeta meta, PrepSummary& sum) {
  std::vector<std::unique_ptr<PartReader>> parts;
  for (int r = 0; r < world.size; ++r) {
    parts.push_back(std::make_unique<PartReader>(part_path(opt, r)));
    for (int s = 0; s < kNumSplits; ++s)
      sum.documents[static_cast<size_t>(s)] +=
          parts.back()->file.attr_int(std::string("docs_") + split_name(static_cast<Split>(s)));
  }
  std::vector<ShardWriter> writers;
  for (int s = 0; s < kNumSplits; ++s) {
    meta.split = split_name(static_cast<Split>(s));
    writers.emplace_back(opt, meta);
  }
  Progress progress("write shards", static_cast<double>(num_files), "files", opt.progress);
  std::vector<int32_t> buf;
  for (size_t f = 0; f < num_files; ++f) {
    PartReader& p = *parts[f % static_cast<size_t>(world.size)];
    while (p.item < p.len.size() && p.file_id[p.item] == static_cast<int64_t>(f)) {
      // One hyperslab read for a run of items of this file (up to ~4M tokens).
      size_t end = p.item;
      int64_t n = 0;
      while (end < p.len.size() && p.file_id[end] == static_cast<int64_t>(f) && (n == 0 || n + p.len[end] <= (1 << 22)))
        n += p.len[end++];
      buf.resize(static_cast<size_t>(n));
      p.tokens.read_slab<int32_t>({p.offset}, {n}, buf.data());
      int64_t at = 0;
      for (; p.item < end; ++p.item) {
        const auto s = static_cast<size_t>(p.split[p.item]);
        writers[s].add(buf.data() + at, p.len[p.item]);
        sum.tokens[s] += p.len[p.item];
        if (opt.task == SampleKind::kMlm) ++sum.samples[s];
        at += p.len[p.item];
      }
      p.offset += n;
    }
    progress.update(static_cast<double>(f + 1));
  }
  progress.update(static_cast<double>(num_files), true);
  std::vector<std::string> written;
  for (int s = 0; s < kNumSplits; ++s) {
    sum.shards[static_cast<size_t>(s)] = writers[static_cast<size_t>(s)].flush();
    const auto& w = writers[static_cast<size_t>(s)].written();
    written.insert(written.end(), w.begin(), w.end());
  }
  return written;
}

}  // namespace

PrepSummary run_prep(const PrepOptions& opt, const PrepWorld& world) {
  opt.validate();
  InputFormat fmt = opt.format;
  const std::vector<InputFile> files = list_inputs(opt.input, fmt);
  if (opt.progress && world.rank == 0) {
    double mb = 0;
    for (const InputFile& f : files) mb += static_cast<double>(f.bytes) / 1e6;
    std::fprintf(stderr, "[cst-prep] %zu %s files (%.1f MB) from %s -> %s shards in %s, %d rank(s)\n",
                 files.size(), input_format_name(fmt), mb, opt.input.c_str(),
                 opt.task == SampleKind::kLm ? "LM" : "MLM", opt.output.c_str(), world.size);
  }
  std::unique_ptr<OutputFolder> out;  // rank 0: the output folder, its files committed at the end
  if (world.rank == 0) {
    check_no_overlap({"--output", opt.output}, prep_inputs(opt));
    out = std::make_unique<OutputFolder>(NamedPath{"--output", opt.output}, kTool, opt.overwrite,
                                         std::vector<std::string>{kTokenizer, "train/*.h5", "validation/*.h5",
                                                                  "test/*.h5"});
    fs::create_directories(staging(opt) / "parts");
    make_tokenizer(opt, files, fmt);
  }
  world.barrier();
  PrepSummary sum;
  sentencepiece::SentencePieceProcessor sp;
  const auto st = sp.Load(tokenizer_path(opt));
  CST_INPUT_CHECK(st.ok(), "cannot load tokenizer '" << tokenizer_path(opt) << "': " << st.ToString());
  ShardMeta meta;
  meta.version = kFormatVersion;
  meta.vocab_size = sp.GetPieceSize();
  meta.tokenizer_sha256 = sha256_file(tokenizer_path(opt));
  meta.created_by = opt.created_by;
  meta.special = special_tokens(sp);
  sum.vocab_size = meta.vocab_size;
  sum.tokenizer_sha256 = meta.tokenizer_sha256;
  const SpecialTokens& sp_ids = meta.special;
  CST_INPUT_CHECK(opt.task == SampleKind::kLm || (sp_ids.pad >= 0 && sp_ids.cls >= 0 && sp_ids.sep >= 0 && sp_ids.mask >= 0),
                  "tokenizer '" << tokenizer_path(opt) << "' lacks MLM's special tokens: pad " << sp_ids.pad
                                << ", bos/[CLS] " << sp_ids.cls << ", eos/[SEP] " << sp_ids.sep
                                << ", [MASK] " << sp_ids.mask << " (-1 = missing)");
  encode_part(opt, world, files, fmt, sp);
  world.barrier();
  if (world.rank == 0) {
    std::vector<std::string> written = write_shards(opt, world, files.size(), meta, sum);
    CST_INPUT_CHECK(sum.documents[0] + sum.documents[1] + sum.documents[2] > 0,
                    "input '" << opt.input << "' holds no non-empty document");
    written.push_back(kTokenizer);
    out->commit(written);
  }
  world.barrier();
  return sum;
}

}  // namespace cst::dataio
