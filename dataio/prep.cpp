#include "dataio/prep.h"

#include <sentencepiece_processor.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "common/error.h"
#include "common/h5.h"
#include "common/output_folder.h"
#include "dataio/format.h"
#include "dataio/prep_tokenizer.h"

namespace cst::dataio {
namespace fs = std::filesystem;

std::vector<PrepInput> parse_prep_inputs(const std::vector<std::string>& inputs,
                                         const std::vector<std::string>& formats) {
  CST_INPUT_CHECK(formats.size() <= 1 || formats.size() == inputs.size(),
                  "cst-prep: " << formats.size() << " --format values for " << inputs.size()
                               << " --input values (give one for all, or one per input)");
  std::vector<PrepInput> out;
  for (size_t i = 0; i < inputs.size(); ++i) {
    PrepInput in;
    in.path = inputs[i];
    const size_t eq = in.path.find('=');
    const std::string prefix = in.path.substr(0, eq == std::string::npos ? 0 : eq);
    if (!prefix.empty() &&
        prefix.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") ==
            std::string::npos) {
      in.name = prefix;
      in.path = in.path.substr(eq + 1);
    } else {
      fs::path p = fs::path(in.path).lexically_normal();
      if (p.filename().empty()) p = p.parent_path();
      in.name = p.stem().string();
    }
    CST_INPUT_CHECK(!in.name.empty() && in.name != "." && in.name != "..",
                    "cst-prep: --input '" << inputs[i] << "' gives no name for its output folder: write name=path");
    if (!formats.empty()) in.format = parse_input_format(formats[formats.size() == 1 ? 0 : i]);
    for (const PrepInput& o : out)
      CST_INPUT_CHECK(o.name != in.name, "cst-prep: --input '" << inputs[i] << "' and --input '" << o.path
                                                               << "' both write to folder '" << in.name
                                                               << "': name them (name=path)");
    out.push_back(std::move(in));
  }
  return out;
}

void PrepOptions::validate() const {
  CST_INPUT_CHECK(!inputs.empty(), "cst-prep: no input given");
  for (const PrepInput& in : inputs) {
    CST_INPUT_CHECK(!in.path.empty(), "cst-prep: an empty input path");
    CST_INPUT_CHECK(inputs.size() == 1 || (!in.name.empty() && in.name.find('/') == std::string::npos &&
                                           in.name != "." && in.name != ".."),
                    "cst-prep: input '" << in.path << "': output folder name '" << in.name << "' is not a plain name");
  }
  CST_INPUT_CHECK(!output.empty(), "cst-prep: no output folder given");
  CST_INPUT_CHECK(vocab_size >= 16, "vocab size " << vocab_size << " must be >= 16");
  CST_INPUT_CHECK(model_type == "unigram" || model_type == "bpe" || model_type == "char" || model_type == "word",
                  "tokenizer model type '" << model_type << "' (unigram, bpe, char, word)");
  CST_INPUT_CHECK(character_coverage > 0 && character_coverage <= 1,
                  "character coverage " << character_coverage << " outside (0, 1]");
  CST_INPUT_CHECK(spm_max_bytes > 0, "spm max bytes " << spm_max_bytes << " must be > 0");
  CST_INPUT_CHECK(task == SampleKind::kLm || seq_len >= 8, "MLM sequence length " << seq_len << " must be >= 8");
  CST_INPUT_CHECK(shard_tokens > 0 && shard_rows > 0, "shard sizes must be > 0");
  CST_INPUT_CHECK(valid_fraction >= 0 && test_fraction >= 0 && valid_fraction + test_fraction < 1,
                  "valid fraction " << valid_fraction << " + test fraction " << test_fraction << " must be in [0, 1)");
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
                 total_ > 0 ? 100.0 * done / total_ : 100.0, done, total_, unit_, rate, unit_, final ? "took" : "ETA",
                 final ? secs : eta);
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
std::string part_path(const PrepOptions& opt, const PrepCorpus& c, int rank) {
  return (staging(opt) / "parts" / c.input.name / ("part-" + std::to_string(rank) + ".h5")).string();
}
// The folder of a corpus's splits relative to the output ("" for a single input).
std::string corpus_rel(const PrepOptions& opt, const PrepCorpus& c) {
  return opt.inputs.size() == 1 ? "" : c.input.name + "/";
}

// The paths cst-prep reads, which its output may not overlap.
std::vector<NamedPath> prep_inputs(const PrepOptions& opt) {
  std::vector<NamedPath> in{{"--tokenizer", opt.tokenizer}};
  for (const PrepInput& i : opt.inputs) in.push_back({"--input", i.path});
  return in;
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
void encode_part(const PrepOptions& opt, const PrepWorld& world, const PrepCorpus& corpus,
                 const sentencepiece::SentencePieceProcessor& sp) {
  const std::vector<InputFile>& files = corpus.files;
  const InputFormat fmt = corpus.input.format;
  h5::File part(part_path(opt, corpus, world.rank), h5::File::Mode::kCreate);
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
  Progress progress("encode " + corpus.input.name + " (rank 0's files)", total, "MB", opt.progress && world.rank == 0);
  for (size_t i = static_cast<size_t>(world.rank); i < files.size(); i += static_cast<size_t>(world.size)) {
    int64_t doc = 0;
    read_documents(files[i], fmt, opt.jsonl_field, opt.encoding, [&](std::string&& d) {
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
  // Writes into <staging>/<rel><split>/.
  ShardWriter(const PrepOptions& opt, ShardMeta meta, const std::string& rel) : opt_(opt), meta_(std::move(meta)) {
    rel_ = rel + meta_.split + "/";
    dir_ = staging(opt) / rel_;
  }
  const std::vector<std::string>& written() const { return written_; }  // relative to the output
  void add(const int32_t* t, int64_t n) {
    tokens_.insert(tokens_.end(), t, t + n);
    ++items_;
    if (opt_.task == SampleKind::kLm) offsets_.push_back(static_cast<int64_t>(tokens_.size()));
    const bool full = opt_.task == SampleKind::kLm ? static_cast<int64_t>(tokens_.size()) >= opt_.shard_tokens
                                                   : items_ >= opt_.shard_rows;
    if (full) flush();
  }
  // Writes the open shard if it holds anything. Returns the shards written so far.
  int64_t flush() {
    if (items_ == 0) return shards_;
    fs::create_directories(dir_);
    char name[32];
    std::snprintf(name, sizeof(name), "shard-%05lld.h5", static_cast<long long>(shards_));
    const std::string path = (dir_ / name).string();
    written_.push_back(rel_ + name);
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
  std::string rel_;
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
      : file(path, h5::File::Mode::kRead),
        tokens(file.open("tokens")),
        len(file.open("item_len").read<int64_t>()),
        file_id(file.open("item_file").read<int64_t>()),
        split(file.open("item_split").read<int8_t>()) {}
};

// Returns the shards written, relative to the output folder.
std::vector<std::string> write_shards(const PrepOptions& opt, const PrepWorld& world, const PrepCorpus& corpus,
                                      ShardMeta meta, CorpusSummary& sum) {
  const size_t num_files = corpus.files.size();
  std::vector<std::unique_ptr<PartReader>> parts;
  for (int r = 0; r < world.size; ++r) {
    parts.push_back(std::make_unique<PartReader>(part_path(opt, corpus, r)));
    for (int s = 0; s < kNumSplits; ++s)
      sum.documents[static_cast<size_t>(s)] +=
          parts.back()->file.attr_int(std::string("docs_") + split_name(static_cast<Split>(s)));
  }
  std::vector<ShardWriter> writers;
  for (int s = 0; s < kNumSplits; ++s) {
    meta.split = split_name(static_cast<Split>(s));
    writers.emplace_back(opt, meta, corpus_rel(opt, corpus));
  }
  Progress progress("write " + corpus.input.name + " shards", static_cast<double>(num_files), "files", opt.progress);
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
  std::vector<PrepCorpus> corpora;
  for (const PrepInput& in : opt.inputs) {
    PrepCorpus c;
    c.input = in;
    c.files = list_inputs(in.path, c.input.format);
    c.dir = opt.inputs.size() == 1 ? opt.output : (fs::path(opt.output) / in.name).string();
    for (const InputFile& f : c.files) c.bytes += f.bytes;
    if (opt.progress && world.rank == 0)
      std::fprintf(stderr, "[cst-prep] %zu %s files (%.1f MB) from %s -> %s shards in %s, %d rank(s)\n", c.files.size(),
                   input_format_name(c.input.format), static_cast<double>(c.bytes) / 1e6, in.path.c_str(),
                   opt.task == SampleKind::kLm ? "LM" : "MLM", c.dir.c_str(), world.size);
    corpora.push_back(std::move(c));
  }
  std::unique_ptr<OutputFolder> out;  // rank 0: the output folder, its files committed at the end
  std::vector<std::string> written;   // rank 0: relative to the output
  if (world.rank == 0) {
    check_no_overlap({"--output", opt.output}, prep_inputs(opt));
    std::vector<std::string> reserved{kTokenizer};
    for (const PrepCorpus& c : corpora)
      for (int s = 0; s < kNumSplits; ++s)
        reserved.push_back(corpus_rel(opt, c) + split_name(static_cast<Split>(s)) + "/*.h5");
    out = std::make_unique<OutputFolder>(NamedPath{"--output", opt.output}, kTool, opt.overwrite, reserved);
    for (const PrepCorpus& c : corpora) fs::create_directories(fs::path(part_path(opt, c, 0)).parent_path());
    make_tokenizer(opt, corpora, tokenizer_path(opt));
  }
  world.barrier();
  PrepSummary sum;
  sentencepiece::SentencePieceProcessor sp;
  // Errors name the tokenizer the user gave, not its copy in the staging folder.
  const std::string shown = opt.tokenizer.empty() ? (fs::path(opt.output) / kTokenizer).string() : opt.tokenizer;
  load_tokenizer(sp, tokenizer_path(opt), shown);
  ShardMeta meta;
  meta.version = kFormatVersion;
  meta.vocab_size = sp.GetPieceSize();
  meta.tokenizer_sha256 = sha256_file(tokenizer_path(opt));
  meta.created_by = opt.created_by;
  meta.special = special_tokens(sp);
  sum.vocab_size = meta.vocab_size;
  sum.tokenizer_sha256 = meta.tokenizer_sha256;
  const SpecialTokens& sp_ids = meta.special;
  CST_INPUT_CHECK(
      opt.task == SampleKind::kLm || (sp_ids.pad >= 0 && sp_ids.cls >= 0 && sp_ids.sep >= 0 && sp_ids.mask >= 0),
      "tokenizer '" << shown << "' lacks MLM's special tokens: pad " << sp_ids.pad << ", bos/[CLS] " << sp_ids.cls
                    << ", eos/[SEP] " << sp_ids.sep << ", [MASK] " << sp_ids.mask << " (-1 = missing)");
  for (const PrepCorpus& c : corpora) {
    encode_part(opt, world, c, sp);
    world.barrier();
    if (world.rank == 0) {
      CorpusSummary cs;
      cs.name = c.input.name;
      cs.dir = c.dir;
      const std::vector<std::string> w = write_shards(opt, world, c, meta, cs);
      written.insert(written.end(), w.begin(), w.end());
      CST_INPUT_CHECK(cs.documents[0] + cs.documents[1] + cs.documents[2] > 0,
                      "input '" << c.input.path << "' holds no non-empty document");
      sum.corpora.push_back(std::move(cs));
    }
    world.barrier();
  }
  if (world.rank == 0) {
    written.push_back(kTokenizer);
    out->commit(written);
  }
  world.barrier();
  return sum;
}

}  // namespace cst::dataio
