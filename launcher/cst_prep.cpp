// cst-prep: raw text -> SentencePiece tokenizer -> HDF5 shards (docs/DATA.md).
//
//   cst-prep --input data/pg19 --output data/pg19-lm --task lm --vocab-size 32000
//   mpirun -np 8 cst-prep --input wiki/ --format wikiextractor --output data/wiki-mlm --task mlm
//   cst-prep --input wiki=enwiki/text --input books=bookcorpus/ --output data/bert --task mlm
//     (several corpora, one tokenizer: data/bert/{wiki,books}/{train,validation}/)
//   cst-prep --task cls --format glue --glue-task mrpc --input glue_data/MRPC --output data/mrpc
//            --tokenizer data/bert/tokenizer.model --seq-len 128
//     (labelled examples for fine-tuning, dataio/prep_cls.h; one process)
//
// The output folder may not overlap the input or the tokenizer; a non-empty one is refused
// unless --overwrite, which replaces only what an earlier cst-prep run wrote there
// (<output>/cst-prep.json lists it). A failed run leaves the folder as it was.
//
// Exit codes: 0 success, 2 bad input or options, 1 any other failure. Under mpirun a failing
// rank prints its error and aborts the job (MPI_Abort) so that no rank hangs.
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "common/error.h"
#include "dataio/prep.h"
#include "dataio/prep_cls.h"
#include "launcher/tool_main.h"

namespace po = boost::program_options;
using cst::dataio::PrepOptions;

namespace {

// Parses the command line into `opt`; returns false after printing --help.
// --task cls fills `cls` (and sets is_cls) instead.
bool parse(int argc, char** argv, PrepOptions& opt, cst::dataio::ClsPrepOptions& cls, bool& is_cls, bool print) {
  std::string task = "lm", encoding = "utf-8";
  std::vector<std::string> inputs, formats;
  bool quiet = false;
  po::options_description desc("cst-prep: tokenize raw text into HDF5 shards.\nOptions");
  desc.add_options()("help,h", "print this help")("input,i", po::value(&inputs)->required(),
                                                  "[name=]corpus file or folder; repeat for several corpora with "
                                                  "one tokenizer (output <output>/<name>/)")(
      "format", po::value(&formats),
      "auto (default) | pg19 | wikiextractor | jsonl | txt; once for all "
      "inputs or once per input; --task cls: jsonl | glue | lra-listops")(
      "jsonl-field", po::value(&opt.jsonl_field)->default_value(opt.jsonl_field), "jsonl: field with the text")(
      "output,o", po::value(&opt.output)->required(), "output folder (new, empty, or one cst-prep wrote)")(
      "overwrite", po::bool_switch(&opt.overwrite), "replace the files an earlier cst-prep run wrote in --output")(
      "task", po::value(&task)->default_value(task),
      "lm (token streams) | mlm (packed sequences) | cls (labelled examples)")(
      "tokenizer", po::value(&opt.tokenizer), "use this SentencePiece .model instead of training one")(
      "vocab-size", po::value(&opt.vocab_size)->default_value(opt.vocab_size), "trained tokenizer: vocabulary size")(
      "model-type", po::value(&opt.model_type)->default_value(opt.model_type),
      "trained tokenizer: unigram | bpe | char | word")(
      "character-coverage", po::value(&opt.character_coverage)->default_value(opt.character_coverage, "0.9995"),
      "trained tokenizer: character coverage")("spm-max-bytes",
                                               po::value(&opt.spm_max_bytes)->default_value(opt.spm_max_bytes),
                                               "trained tokenizer: bytes of train text it sees")(
      "seq-len", po::value(&opt.seq_len)->default_value(opt.seq_len), "mlm: tokens per row incl. [CLS]/[SEP]")(
      "shard-tokens", po::value(&opt.shard_tokens)->default_value(opt.shard_tokens),
      "lm: tokens per shard (documents are not split)")(
      "shard-rows", po::value(&opt.shard_rows)->default_value(opt.shard_rows), "mlm: rows per shard")(
      "valid-fraction", po::value(&opt.valid_fraction)->default_value(opt.valid_fraction),
      "non-pg19: share of documents for validation")("test-fraction",
                                                     po::value(&opt.test_fraction)->default_value(opt.test_fraction),
                                                     "non-pg19: share of documents for test")(
      "seed", po::value(&opt.seed)->default_value(opt.seed), "tokenizer training seed")(
      "quiet,q", po::bool_switch(&quiet), "no progress output")(
      "encoding", po::value(&encoding)->default_value(encoding),
      "utf-8 (checked: other bytes are an error) | latin-1 (ISO-8859-1, converted to UTF-8)")(
      "glue-task", po::value(&cls.read.glue_task),
      "cls, glue: cola | sst-2 | mrpc | qqp | sts-b | mnli | qnli | rte | wnli")(
      "jsonl-pair-field", po::value(&cls.read.jsonl_pair_field), "cls, jsonl: field with the second text of a pair")(
      "jsonl-label-field", po::value(&cls.read.jsonl_label_field)->default_value(cls.read.jsonl_label_field),
      "cls, jsonl: field with the label (integer, or string mapped to ids in sorted order)")(
      "skip-bad-rows", po::bool_switch(&cls.skip_bad_rows), "cls: skip (count, report) rows that are errors otherwise");
  po::variables_map vm;
  cst::reject_option_placeholders(argc, argv);
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    if (vm.count("help")) {
      if (print) std::cout << desc << "\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    CST_THROW_INPUT("cst-prep: " << e.what() << " (see --help)");
  }
  opt.created_by = "cst-prep";
  for (int i = 1; i < argc; ++i) opt.created_by += std::string(" ") + argv[i];
  is_cls = task == "cls";
  if (is_cls) {
    CST_INPUT_CHECK(inputs.size() == 1 && formats.size() == 1,
                    "cst-prep --task cls: give one --input and one --format (jsonl, glue or lra-listops)");
    cls.input = inputs[0];
    cls.read.format = cst::dataio::parse_cls_format(formats[0]);
    cls.read.jsonl_field = opt.jsonl_field;
    cls.read.encoding = cst::dataio::parse_text_encoding(encoding);
    cls.output = opt.output, cls.overwrite = opt.overwrite, cls.tokenizer = opt.tokenizer;
    cls.seq_len = opt.seq_len, cls.shard_rows = opt.shard_rows, cls.valid_fraction = opt.valid_fraction;
    cls.seed = opt.seed, cls.created_by = opt.created_by;
    return true;
  }
  opt.inputs = cst::dataio::parse_prep_inputs(inputs, formats);
  CST_INPUT_CHECK(task == "lm" || task == "mlm", "cst-prep: --task '" << task << "' (lm, mlm or cls)");
  opt.task = task == "lm" ? cst::dataio::SampleKind::kLm : cst::dataio::SampleKind::kMlm;
  opt.encoding = cst::dataio::parse_text_encoding(encoding);
  opt.progress = !quiet;
  return true;
}

void print_summary(const PrepOptions& opt, const cst::dataio::PrepSummary& s) {
  std::printf("tokenizer: %s/tokenizer.model (vocab %lld, sha256 %s)\n", opt.output.c_str(),
              static_cast<long long>(s.vocab_size), s.tokenizer_sha256.c_str());
  for (const cst::dataio::CorpusSummary& c : s.corpora)
    for (int i = 0; i < cst::dataio::kNumSplits; ++i) {
      const auto k = static_cast<size_t>(i);
      if (c.shards[k] == 0) continue;
      std::printf(
          "%-10s: %lld documents, %lld tokens%s, %lld shards in %s/%s/\n",
          cst::dataio::split_name(static_cast<cst::dataio::Split>(i)), static_cast<long long>(c.documents[k]),
          static_cast<long long>(c.tokens[k]),
          opt.task == cst::dataio::SampleKind::kMlm ? (", " + std::to_string(c.samples[k]) + " rows").c_str() : "",
          static_cast<long long>(c.shards[k]), c.dir.c_str(),
          cst::dataio::split_name(static_cast<cst::dataio::Split>(i)));
    }
}

void print_cls_summary(const cst::dataio::ClsPrepOptions& opt, const cst::dataio::ClsPrepSummary& s) {
  std::printf("task %s: %lld classes; tokenizer: %s/%s (vocab %lld, sha256 %s)\n", s.task.c_str(),
              static_cast<long long>(s.num_classes), opt.output.c_str(), s.tokenizer_file.c_str(),
              static_cast<long long>(s.vocab_size), s.tokenizer_sha256.c_str());
  for (const cst::dataio::ClsSplitSummary& p : s.splits) {
    std::string labels;
    for (size_t i = 0; i < p.label_counts.size(); ++i)
      labels += (i ? ", " : "") + s.label_names[i] + " " + std::to_string(p.label_counts[i]);
    std::printf(
        "%-21s: %lld examples, %lld truncated to %lld tokens, %lld bad rows skipped, %lld unlabelled, %lld "
        "shards in %s/%s/%s%s\n",
        p.split.c_str(), static_cast<long long>(p.examples), static_cast<long long>(p.truncated),
        static_cast<long long>(opt.seq_len), static_cast<long long>(p.skipped), static_cast<long long>(p.unlabelled),
        static_cast<long long>(p.shards), opt.output.c_str(), p.split.c_str(),
        labels.empty() ? "" : "; labels: ", labels.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<cst::comm::MpiEnvironment> mpi;
  int code = 0;
  try {
    mpi = std::make_unique<cst::comm::MpiEnvironment>(argc, argv);
    PrepOptions opt;
    cst::dataio::ClsPrepOptions cls;
    bool is_cls = false;
    if (!parse(argc, argv, opt, cls, is_cls, mpi->rank() == 0)) return 0;
    if (is_cls) {
      CST_INPUT_CHECK(mpi->size() == 1,
                      "cst-prep --task cls runs on one process (not under mpirun -np " << mpi->size() << ")");
      print_cls_summary(cls, cst::dataio::run_cls_prep(cls));
      return 0;
    }
    opt.progress = opt.progress && mpi->rank() == 0;
    cst::dataio::PrepWorld world{mpi->rank(), mpi->size(), [&] { mpi->barrier(); }};
    const cst::dataio::PrepSummary summary = cst::dataio::run_prep(opt, world);
    if (mpi->rank() == 0) print_summary(opt, summary);
    return 0;
  } catch (...) {
    code = cst::report_exception(std::current_exception());
  }
  if (mpi && mpi->size() > 1) {
    std::fprintf(stderr, "error: rank %d on %s aborts the job\n", mpi->rank(), mpi->host().c_str());
    mpi->abort(code);
  }
  return code;
}
