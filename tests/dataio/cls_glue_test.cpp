// cst-prep --task cls on each GLUE task's layout as distributed, and bad rows: errors naming
// file, line and column, or skipped and counted with skip_bad_rows.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "cls_test_util.h"
#include "common/h5.h"
#include "dataio/prep.h"
#include "dataio/prep_cls.h"

namespace cst::dataio {
namespace {
namespace fs = std::filesystem;
using testing::expect_input_error;
using testing::TempDir;

// A small SentencePiece model of the words the rows below use.
std::string sp_model(const TempDir& dir) {
  return testing::small_tokenizer(dir, "one two three four five six seven eight nine ten a b c", 40);
}

ClsPrepOptions glue_opts(const TempDir& dir, const std::string& task) {
  ClsPrepOptions o;
  o.input = dir.file("glue");
  o.read.format = ClsFormat::kGlue;
  o.read.glue_task = task;
  o.output = dir.file("out-" + task);
  o.seq_len = 12;
  return o;
}

// One task's files (written to glue/<folder>/) and what one of its split folders must hold.
struct GlueCase {
  std::string task, folder;
  std::vector<std::pair<std::string, std::string>> files;  // name -> content
  std::string split;                                       // a split folder to look at
  std::vector<int64_t> labels, index;                      // its labels (ids) and example_index
  std::vector<float> targets;                              // regression
  bool pair;
};

TEST(ClsGlue, EveryTaskLayout) {
  TempDir dir;
  const std::string tok = sp_model(dir);
  const std::string mnli_head =
      "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
      "sentence2_parse\tsentence1\tsentence2";
  const std::vector<GlueCase> cases = {
      {"cola",
       "CoLA",
       {{"train.tsv", "gj04\t1\t\tone two\ngj04\t0\t*\tthree four five\n"},
        {"test.tsv", "index\tsentence\n0\tsix\n1\tseven\n"}},
       "train",
       {1, 0},
       {0, 1},
       {},
       false},
      {"cola", "CoLA", {{"test.tsv", "index\tsentence\n0\tsix\n1\tseven\n"}}, "test", {-1, -1}, {0, 1}, {}, false},
      {"sst-2",
       "SST-2",
       {{"dev.tsv", "sentence\tlabel\none two \t1\nthree \t0\nfour\t1\n"}},
       "validation",
       {1, 0, 1},
       {0, 1, 2},
       {},
       false},
      {"mrpc",
       "MRPC",
       {{"train.tsv",
         "\xEF\xBB\xBFQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t11\t12\tone two\tone three\n"
         "0\t13\t14\tfour\tfive\n"},
        {"test.tsv", "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t5\t6\tsix\tseven\n"}},
       "train",
       {1, 0},
       {0, 1},
       {},
       true},
      {"qqp",
       "QQP",
       {{"train.tsv",
         "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n5\t1\t2\tone\ttwo\t0\n7\t3\t4\tthree\tthree\t1\n"}},
       "train",
       {0, 1},
       {5, 7},
       {},
       true},
      {"sts-b",
       "STS-B",
       {{"dev.tsv",
         "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
         "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tone plane\tone a plane\t5.000\n"
         "3\tmain-news\tMSRpar\t2012test\t0002\tnone\tnone\ttwo\tthree\t0.250\n"}},
       "validation",
       {},
       {0, 3},
       {5.0f, 0.25f},
       true},
      {"mnli",
       "MNLI",
       {{"dev_matched.tsv", mnli_head + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
                                        "4\t1\t1e\tfiction\t(x)\t(y)\t(x)\t(y)\tone\ttwo\tneutral\tneutral\tneutral\t"
                                        "neutral\tneutral\tneutral\n"
                                        "9\t2\t2c\tfiction\t(x)\t(y)\t(x)\t(y)\tthree\tfour\tcontradiction\t"
                                        "contradiction\tneutral\tcontradiction\tcontradiction\tcontradiction\n"},
        {"test_mismatched.tsv", mnli_head + "\n0\t1\t1\tletters\t(x)\t(y)\t(x)\t(y)\tfive\tsix\n"}},
       "validation_matched",
       {2, 0},
       {4, 9},
       {},
       true},
      {"mnli",
       "MNLI",
       {{"test_mismatched.tsv", mnli_head + "\n8\t1\t1\tletters\t(x)\t(y)\t(x)\t(y)\tfive\tsix\n"}},
       "test_mismatched",
       {-1},
       {8},
       {},
       true},
      {"qnli",
       "QNLI",
       {{"train.tsv",
         "index\tquestion\tsentence\tlabel\n0\tone?\ttwo.\tnot_entailment\n1\tthree?\tfour.\tentailment\n"}},
       "train",
       {1, 0},
       {0, 1},
       {},
       true},
      {"rte",
       "RTE",
       {{"train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tone\ttwo\tentailment\n"}},
       "train",
       {0},
       {0},
       {},
       true},
      {"wnli",
       "WNLI",
       {{"dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tone\ttwo\t1\n1\tb\tc\t0\n"}},
       "validation",
       {1, 0},
       {0, 1},
       {},
       true},
  };
  for (const GlueCase& c : cases) {
    SCOPED_TRACE(c.task + " " + c.split);
    fs::remove_all(dir.file("glue"));
    for (const auto& [name, text] : c.files) testing::write_input(dir.file("glue/" + c.folder + "/" + name), text);
    ClsPrepOptions o = glue_opts(dir, c.task);
    o.tokenizer = tok;
    o.overwrite = true;
    const ClsPrepSummary sum = run_cls_prep(o);
    EXPECT_EQ(sum.task, "glue/" + c.task);
    h5::File f(o.output + "/" + c.split + "/shard-00000.h5", h5::File::Mode::kRead);
    EXPECT_EQ(f.open("example_index").read<int64_t>(), c.index);
    if (c.targets.empty()) {
      EXPECT_EQ(f.open("labels").read<int64_t>(), c.labels);
    } else {
      EXPECT_EQ(f.attr_int("num_classes"), 1);
      EXPECT_EQ(f.open("labels").read<float>(), c.targets);
    }
    const auto seg = f.open("segment_ids").read<int8_t>();
    EXPECT_EQ(*std::max_element(seg.begin(), seg.end()), c.pair ? 1 : 0);
    EXPECT_EQ(f.attr_string("split"), c.split.substr(0, c.split.find('_')));
  }
  // One file alone: its split from its name.
  ClsPrepOptions single = glue_opts(dir, "wnli");
  single.input = dir.file("glue/WNLI/dev.tsv"), single.tokenizer = tok, single.output = dir.file("single");
  EXPECT_EQ(run_cls_prep(single).splits.at(0).split, "validation");
  single.input = dir.file("glue/WNLI/other.tsv");
  testing::write_input(single.input, "index\tsentence1\tsentence2\tlabel\n");
  expect_input_error([&] { run_cls_prep(single); }, {"other.tsv' is no GLUE WNLI file"});
  // MNLI's label order, and a regression test split's NaN targets.
  EXPECT_EQ(glue_task_info("MNLI").label_names, (std::vector<std::string>{"contradiction", "entailment", "neutral"}));
  testing::write_input(dir.file("glue/STS-B/test.tsv"),
                       "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\t"
                       "sentence2\n0\tg\tf\ty\to\ts\ts\tone\ttwo\n");
  ClsPrepOptions o = glue_opts(dir, "stsb");
  o.tokenizer = tok, o.overwrite = true;
  run_cls_prep(o);
  const auto t = h5::File(o.output + "/test/shard-00000.h5", h5::File::Mode::kRead).open("labels").read<float>();
  ASSERT_EQ(t.size(), 1u);
  EXPECT_TRUE(std::isnan(t[0]));
}

TEST(ClsGlue, BadRowsNameFileLineAndColumnOrAreSkipped) {
  TempDir dir;
  const std::string tok = sp_model(dir);
  struct Bad {
    std::string task, file, text;
    std::vector<std::string> words;
  };
  const std::vector<Bad> bad = {
      {"rte",
       "RTE/train.tsv",
       "index\tsentence1\tsentence2\tlabel\n0\tone\ttwo\tmaybe\n",
       {"line 2 column 4 ('label')", "'maybe'"}},
      {"rte", "RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tone\ttwo\n", {"line 2 column 4", "3 columns"}},
      {"rte",
       "RTE/train.tsv",
       "index\tsentence1\tsentence2\tlabel\nx\tone\ttwo\tentailment\n",
       {"line 2 column 1 ('index')", "'x'"}},
      {"sts-b",
       "STS-B/train.tsv",
       "index\tsentence1\tsentence2\tscore\n0\tone\ttwo\tfive\n",
       {"line 2 column 4 ('score')", "'five'"}},
      {"qnli", "QNLI/train.tsv", "index\tquestion\tlabel\n0\tone\tentailment\n", {"line 1", "'sentence'"}},
      {"cola", "CoLA/train.tsv", "gj04\t1\tone\n", {"line 1 column 4", "3 columns"}},
      {"mrpc", "MRPC/train.tsv", "Quality\t#1 String\t#2 String\n1\tone\xff\ttwo\n", {"byte offset 33"}},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.task + ": " + b.text);
    fs::remove_all(dir.file("glue"));
    testing::write_input(dir.file("glue/" + b.file), b.text);
    ClsPrepOptions o = glue_opts(dir, b.task);
    o.tokenizer = tok;
    std::vector<std::string> words = b.words;
    words.push_back(dir.file("glue/" + b.file));
    expect_input_error([&] { run_cls_prep(o); }, words);
    EXPECT_FALSE(fs::exists(o.output));
  }
  // Skipped and counted; the good rows keep their row numbers as example_index.
  fs::remove_all(dir.file("glue"));
  testing::write_input(dir.file("glue/SST-2/train.tsv"), "sentence\tlabel\none\t1\ntwo\t2\nthree\n\nfour\t0\n");
  ClsPrepOptions o = glue_opts(dir, "sst-2");
  o.tokenizer = tok, o.skip_bad_rows = true;
  const ClsPrepSummary sum = run_cls_prep(o);
  EXPECT_EQ(sum.splits[0].skipped, 2);
  EXPECT_EQ(sum.splits[0].examples, 2);
  EXPECT_EQ(h5::File(o.output + "/train/shard-00000.h5", h5::File::Mode::kRead).open("example_index").read<int64_t>(),
            (std::vector<int64_t>{0, 3}));
  // ListOps and jsonl rows; options and tokenizers.
  testing::write_input(dir.file("lo.tsv"), "Source\tTarget\n[MAX 1 [FOO 2 ] ]\t1\n");
  testing::write_input(dir.file("lo2.tsv"), "Source\tTarget\n[MAX 1 2 ]\t12\n");
  testing::write_input(dir.file("j/train.jsonl"), "{\"text\": \"one\", \"label\": 1}\n{\"text\": \"two\"}\n");
  testing::write_input(dir.file("k/train.jsonl"), "{\"text\": 5, \"label\": 1}\n");
  testing::write_input(dir.file("g/train.jsonl"), "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\", \"label\": 1}\n");
  testing::write_input(dir.file("m/train.jsonl"),
                       "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": \"x\"}\n");
  auto opts = [&](const std::string& in, ClsFormat f, const std::string& t) {
    ClsPrepOptions p;
    p.input = dir.file(in), p.read.format = f, p.output = dir.file("o"), p.tokenizer = t;
    return p;
  };
  expect_input_error([&] { run_cls_prep(opts("lo.tsv", ClsFormat::kListOps, "")); },
                     {dir.file("lo.tsv"), "line 2 column 1 ('Source') word 3", "'[FOO'"});
  expect_input_error([&] { run_cls_prep(opts("lo2.tsv", ClsFormat::kListOps, "")); },
                     {dir.file("lo2.tsv"), "line 2 column 2 ('Target')", "'12'"});
  expect_input_error([&] { run_cls_prep(opts("j", ClsFormat::kJsonl, tok)); },
                     {dir.file("j/train.jsonl"), "line 2 field 'label'", "missing"});
  expect_input_error([&] { run_cls_prep(opts("k", ClsFormat::kJsonl, tok)); },
                     {dir.file("k/train.jsonl"), "line 1 field 'text'", "not a string"});
  expect_input_error([&] { run_cls_prep(opts("m", ClsFormat::kJsonl, tok)); }, {"all integers or all strings"});
  testing::write_input(dir.file("bad.model"), "not a model");
  expect_input_error([&] { run_cls_prep(opts("g", ClsFormat::kJsonl, dir.file("bad.model"))); },
                     {"cannot load tokenizer '" + dir.file("bad.model") + "'"});
  expect_input_error([&] { run_cls_prep(opts("k", ClsFormat::kJsonl, "")); }, {"--tokenizer is needed"});
  expect_input_error([&] { glue_task_info("squad"); }, {"'squad'"});
  EXPECT_FALSE(fs::exists(dir.file("o")));
}

}  // namespace
}  // namespace cst::dataio
