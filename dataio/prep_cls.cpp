#include "dataio/prep_cls.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>

#include "common/error.h"
#include "common/output_folder.h"
#include "common/output_guard.h"
#include "dataio/prep_tokenizer.h"
#include "dataio/rng.h"

namespace cst::dataio {
namespace fs = std::filesystem;

void ClsPrepOptions::validate() const {
  CST_INPUT_CHECK(!input.empty(), "cst-prep --task cls: no input given");
  CST_INPUT_CHECK(!output.empty(), "cst-prep --task cls: no output folder given");
  CST_INPUT_CHECK(read.format == ClsFormat::kListOps || !tokenizer.empty(),
                  "cst-prep --task cls: --tokenizer is needed (the pretraining tokenizer; cls never trains one)");
  CST_INPUT_CHECK(read.format != ClsFormat::kGlue || !read.glue_task.empty(), "--format glue needs --glue-task");
  CST_INPUT_CHECK(seq_len >= 8 && seq_len <= (1 << 20), "--seq-len " << seq_len << " must be in [8, 2^20]");
  CST_INPUT_CHECK(shard_rows > 0, "--shard-rows " << shard_rows << " must be > 0");
  CST_INPUT_CHECK(valid_fraction >= 0 && valid_fraction < 1, "--valid-fraction " << valid_fraction << " not in [0, 1)");
}

bool layout_cls_row(std::vector<int32_t>& a, std::vector<int32_t>& b, bool pair, const SpecialTokens& special,
                    int64_t seq_len, int32_t* ids, int8_t* mask, int8_t* segments) {
  const size_t room = static_cast<size_t>(seq_len - (pair ? 3 : 2));
  bool cut = false;
  while (a.size() + b.size() > room) {
    cut = true;
    (a.size() > b.size() ? a : b).pop_back();
  }
  int64_t at = 0;
  auto put = [&](int32_t id, int8_t seg) {
    ids[at] = id, mask[at] = 1, segments[at] = seg;
    ++at;
  };
  put(special.cls, 0);
  for (int32_t t : a) put(t, 0);
  put(special.sep, 0);
  if (pair) {
    for (int32_t t : b) put(t, 1);
    put(special.sep, 1);
  }
  for (; at < seq_len; ++at) ids[at] = special.pad, mask[at] = 0, segments[at] = 0;
  return cut;
}

namespace {

constexpr char kTool[] = "cst-prep";

// The tokenizer of the examples, its special ids and the file that records it.
struct ClsTokenizer {
  std::function<void(const std::string&, std::vector<int32_t>&)> encode;
  SpecialTokens special;
  int64_t vocab_size = 0;
  std::string file;    // name in the output folder
  std::string sha256;  // of that file
};

// Writes the tokenizer's file into `staging` and returns the tokenizer.
ClsTokenizer make_cls_tokenizer(const ClsPrepOptions& opt, const fs::path& staging,
                                std::shared_ptr<sentencepiece::SentencePieceProcessor>& sp) {
  ClsTokenizer t;
  if (opt.read.format == ClsFormat::kListOps) {
    const std::vector<std::string>& vocab = listops_vocabulary();
    t.file = "listops-vocab.txt";
    {
      std::ofstream f(staging / t.file, std::ios::binary | std::ios::trunc);
      for (const std::string& w : vocab) f << w << '\n';
      CST_INPUT_CHECK(f.good(), "cannot write '" << (staging / t.file).string() << "'");
    }
    auto ids = std::make_shared<std::unordered_map<std::string, int32_t>>();
    for (size_t i = 0; i < vocab.size(); ++i) (*ids)[vocab[i]] = static_cast<int32_t>(i);
    t.encode = [ids](const std::string& text, std::vector<int32_t>& out) {
      out.clear();
      size_t at = 0;
      while (at < text.size()) {
        size_t end = text.find(' ', at);
        if (end == std::string::npos) end = text.size();
        if (end > at) out.push_back(ids->at(text.substr(at, end - at)));  // the reader checked each token
        at = end + 1;
      }
    };
    t.special = {0, 1, 2, 3, -1};
    t.vocab_size = static_cast<int64_t>(vocab.size());
  } else {
    std::error_code ec;
    CST_INPUT_CHECK(fs::is_regular_file(opt.tokenizer, ec), "tokenizer model '" << opt.tokenizer << "' not found");
    sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
    load_tokenizer(*sp, opt.tokenizer, opt.tokenizer);
    t.file = "tokenizer.model";
    fs::copy_file(opt.tokenizer, staging / t.file);
    t.special = special_tokens(*sp);
    CST_INPUT_CHECK(t.special.pad >= 0 && t.special.cls >= 0 && t.special.sep >= 0,
                    "tokenizer '" << opt.tokenizer << "' lacks pad, bos (<s>) or eos (</s>): pad " << t.special.pad
                                  << ", bos " << t.special.cls << ", eos " << t.special.sep << " (-1 = missing)");
    t.vocab_size = sp->GetPieceSize();
    auto* proc = sp.get();
    t.encode = [proc](const std::string& text, std::vector<int32_t>& out) {
      std::vector<int> ids;
      const auto st = proc->Encode(text, &ids);
      CST_CHECK(st.ok(), "SentencePiece encode failed: " << st.ToString());
      out.assign(ids.begin(), ids.end());
    };
  }
  t.sha256 = sha256_file((staging / t.file).string());
  return t;
}

// The rows of one output split and where they came from.
struct SplitRows {
  std::string split;
  std::string file;  // for messages
  std::vector<ClsRow> rows;
  int64_t skipped = 0;
};

std::vector<SplitRows> read_splits(const ClsPrepOptions& opt, const ClsTaskInfo& info) {
  std::vector<SplitRows> out;
  for (const ClsSplitFile& f : list_cls_splits(opt.input, opt.read)) {
    SplitRows s{f.split, f.path, {}, 0};
    s.skipped = read_cls_rows(f, opt.read, info, opt.skip_bad_rows, opt.report_skips,
                              [&](ClsRow&& r) { s.rows.push_back(std::move(r)); });
    if (!f.split.empty()) {
      out.push_back(std::move(s));
      continue;
    }
    // One file: rows drawn to validation by a hash of (seed, data row number).
    SplitRows train{"train", f.path, {}, s.skipped}, valid{"validation", f.path, {}, 0};
    for (ClsRow& r : s.rows)
      (unit(counter_hash(opt.seed, static_cast<uint64_t>(r.index))) < opt.valid_fraction ? valid : train)
          .rows.push_back(std::move(r));
    out.push_back(std::move(train));
    if (!valid.rows.empty()) out.push_back(std::move(valid));
  }
  return out;
}

// jsonl: label names from the rows, integers as 0..max, strings sorted.
std::vector<std::string> derive_labels(const std::vector<SplitRows>& splits) {
  std::set<std::string> names;
  int64_t max_int = -1;
  const ClsRow* first = nullptr;
  const std::string* first_file = nullptr;
  for (const SplitRows& s : splits)
    for (const ClsRow& r : s.rows) {
      if (!r.has_label) continue;
      if (!first) first = &r, first_file = &s.file;
      CST_INPUT_CHECK(r.int_label == first->int_label, "labels must be all integers or all strings: '"
                                                           << *first_file << "' row " << first->index << " has "
                                                           << first->label << ", '" << s.file << "' row " << r.index
                                                           << " has " << r.label);
      if (r.int_label)
        max_int = std::max<int64_t>(max_int, std::stoll(r.label));
      else
        names.insert(r.label);
    }
  std::vector<std::string> out(names.begin(), names.end());
  if (max_int >= 0)
    for (int64_t i = 0; i <= max_int; ++i) out.push_back(std::to_string(i));
  CST_INPUT_CHECK(out.size() >= 2, "the input's labels give " << out.size() << " class(es); at least 2 are needed");
  return out;
}

// The shard `split` attribute of an output split folder: train, validation or test.
std::string split_kind(const std::string& split) {
  for (const char* k : {"train", "validation", "test"})
    if (split.rfind(k, 0) == 0) return k;
  return split;
}

}  // namespace

ClsPrepSummary run_cls_prep(const ClsPrepOptions& opt) {
  opt.validate();
  const ClsTaskInfo info = cls_task_info(opt.read);
  std::vector<NamedPath> inputs{{"--input", opt.input}};
  if (opt.read.format != ClsFormat::kListOps) inputs.push_back({"--tokenizer", opt.tokenizer});
  check_no_overlap({"--output", opt.output}, inputs);
  const std::vector<SplitRows> splits = read_splits(opt, info);

  ClsPrepSummary sum;
  sum.task = info.task;
  sum.label_names = info.regression            ? std::vector<std::string>{}
                    : info.label_names.empty() ? derive_labels(splits)
                                               : info.label_names;
  sum.num_classes = info.regression ? 1 : static_cast<int64_t>(sum.label_names.size());
  std::map<std::string, int64_t> label_id;
  for (size_t i = 0; i < sum.label_names.size(); ++i) label_id[sum.label_names[i]] = static_cast<int64_t>(i);

  std::vector<std::string> reserved{opt.read.format == ClsFormat::kListOps ? "listops-vocab.txt" : "tokenizer.model"};
  for (const SplitRows& s : splits) reserved.push_back(s.split + "/*.h5");
  OutputFolder out(NamedPath{"--output", opt.output}, kTool, opt.overwrite, reserved);
  const fs::path staging = out.staging();
  fs::create_directories(staging);
  std::shared_ptr<sentencepiece::SentencePieceProcessor> sp;
  const ClsTokenizer tok = make_cls_tokenizer(opt, staging, sp);
  sum.tokenizer_file = tok.file;
  sum.vocab_size = tok.vocab_size;
  sum.tokenizer_sha256 = tok.sha256;
  std::vector<std::string> written{tok.file};

  ShardMeta meta;
  meta.vocab_size = tok.vocab_size;
  meta.tokenizer_sha256 = tok.sha256;
  meta.created_by = opt.created_by;
  meta.special = tok.special;
  const ClsMeta cls{info.task, sum.num_classes, sum.label_names};
  const int64_t S = opt.seq_len;
  std::vector<int32_t> a, b, ids;
  std::vector<int8_t> mask, seg;
  std::vector<int64_t> labels, index;
  std::vector<float> targets;
  for (const SplitRows& s : splits) {
    ClsSplitSummary ss;
    ss.split = s.split;
    ss.skipped = s.skipped;
    ss.label_counts.assign(info.regression ? 0 : static_cast<size_t>(sum.num_classes), 0);
    meta.split = split_kind(s.split);
    fs::create_directories(staging / s.split);
    for (size_t start = 0; start < s.rows.size(); start += static_cast<size_t>(opt.shard_rows)) {
      const size_t n = std::min(s.rows.size() - start, static_cast<size_t>(opt.shard_rows));
      ids.assign(n * static_cast<size_t>(S), 0), mask.assign(ids.size(), 0), seg.assign(ids.size(), 0);
      labels.clear(), targets.clear(), index.clear();
      for (size_t i = 0; i < n; ++i) {
        const ClsRow& r = s.rows[start + i];
        tok.encode(r.a, a);
        b.clear();
        if (info.pair) tok.encode(r.b, b);
        const size_t at = i * static_cast<size_t>(S);
        ss.truncated += layout_cls_row(a, b, info.pair, tok.special, S, &ids[at], &mask[at], &seg[at]);
        index.push_back(r.index);
        ss.unlabelled += !r.has_label;
        if (info.regression) {
          targets.push_back(r.has_label ? std::stof(r.label) : std::nanf(""));
        } else {
          const int64_t id = r.has_label ? label_id.at(r.label) : -1;
          labels.push_back(id);
          if (id >= 0) ++ss.label_counts[static_cast<size_t>(id)];
        }
      }
      char name[32];
      std::snprintf(name, sizeof(name), "shard-%05lld.h5", static_cast<long long>(ss.shards++));
      write_cls_shard((staging / s.split / name).string(), meta, cls, static_cast<int64_t>(n), S, ids, mask, seg,
                      labels, targets, index);
      written.push_back(s.split + "/" + name);
      ss.examples += static_cast<int64_t>(n);
    }
    sum.splits.push_back(std::move(ss));
  }
  out.commit(written);
  return sum;
}

}  // namespace cst::dataio
