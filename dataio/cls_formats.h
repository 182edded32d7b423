// Labelled-example inputs of `cst-prep --task cls` (docs/DATA.md "cst-prep --task cls"):
//
//   jsonl        a folder holding train.jsonl, validation.jsonl (and test.jsonl), or one file
//                (split by valid_fraction). One JSON object a line: text field, optional second
//                text field, label field (an integer >= 0 or a string; absent in test files).
//   glue         a GLUE task folder as distributed (CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI,
//                RTE, WNLI; or the GLUE root holding it): train.tsv, dev.tsv, test.tsv (MNLI:
//                dev_matched.tsv, dev_mismatched.tsv, test_matched.tsv, test_mismatched.tsv),
//                or one of these files alone; each task's own columns (cls_glue.cpp).
//   lra-listops  LRA ListOps: a folder holding basic_train.tsv, basic_val.tsv, basic_test.tsv, or
//                one file; header "Source\tTarget".
// Files are read as text (text.h: UTF-8 checked, or latin-1 converted; a leading UTF-8 BOM is
// dropped). A bad row is an InputError naming the file, line and column (or field).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dataio/text.h"

namespace cst::dataio {

enum class ClsFormat { kJsonl, kGlue, kListOps };
ClsFormat parse_cls_format(const std::string& name);  // "jsonl" | "glue" | "lra-listops"

// How the input is read.
struct ClsReadOptions {
  ClsFormat format = ClsFormat::kJsonl;
  std::string glue_task;                    // glue: cola, sst-2, mrpc, qqp, sts-b, mnli, qnli, rte, wnli
  std::string jsonl_field = "text";         // jsonl: the (first) text
  std::string jsonl_pair_field;             // jsonl: the second text of a pair ("" = single text)
  std::string jsonl_label_field = "label";  // jsonl: the label (integer or string)
  TextEncoding encoding = TextEncoding::kUtf8;
};

// What the task says of its labels before any row is read.
struct ClsTaskInfo {
  std::string task;                      // "glue/mrpc", "lra/listops", "jsonl"
  bool pair = false;                     // two texts per example
  bool regression = false;               // a float target (STS-B)
  std::vector<std::string> label_names;  // fixed label set in id order; empty: regression or
                                         // derived from the rows (jsonl)
};
ClsTaskInfo cls_task_info(const ClsReadOptions& opt);  // InputError on an unknown GLUE task

// One input file and the output split folder it becomes ("" = split by valid_fraction).
struct ClsSplitFile {
  std::string path;
  std::string split;     // "train", "validation", "validation_matched", "test", ...
  bool labelled = true;  // train and validation files must carry labels; test files need not
};

// The input's files in output order. Throws InputError when the input is missing or holds none
// of its format's files.
std::vector<ClsSplitFile> list_cls_splits(const std::string& input, const ClsReadOptions& opt);

// One example as read from its file.
struct ClsRow {
  std::string a, b;  // the texts (b empty for single-text tasks); ListOps: tokens joined by ' '
  bool has_label = false;
  bool int_label = false;  // jsonl: the label was a JSON integer
  std::string label;       // as in the file; for fixed label sets one of label_names
  int64_t index = 0;       // example_index: the file's index column, else the data row number
};

// Calls on_row for each good row of `file` in order and returns the number of bad rows skipped
// (skip_bad_rows; when `verbose` the first 20 of a file are reported on stderr). Without skip_bad_rows a bad row
// throws InputError "file '<path>' line <n> column <c> ('<name>'): <what>". Checked here: the
// column count, labels of a fixed set, STS-B scores, ListOps tokens and targets, JSON types.
int64_t read_cls_rows(const ClsSplitFile& file, const ClsReadOptions& opt, const ClsTaskInfo& info, bool skip_bad_rows,
                      bool verbose, const std::function<void(ClsRow&&)>& on_row);

// The ListOps vocabulary: "<pad>", "<unk>", "<s>", "</s>", then the task's tokens. Ids are
// positions; the vocabulary file holds one token a line in this order.
const std::vector<std::string>& listops_vocabulary();

// GLUE (cls_glue.cpp): the task's info and files, and one TSV file's rows.
ClsTaskInfo glue_task_info(const std::string& name);
std::vector<ClsSplitFile> glue_split_files(const std::string& input, const std::string& name);
// `guard` runs the parsing of one row (rethrowing or counting its InputError).
using RowGuard = std::function<void(const std::function<void()>&)>;
void read_glue_rows(const ClsSplitFile& file, const std::string& text, const ClsTaskInfo& info, const RowGuard& guard,
                    const std::function<void(ClsRow&&)>& on_row);

// A TSV line's fields (tab-separated, no quoting, as GLUE's and LRA's files are written).
std::vector<std::string> split_tsv(const std::string& line);
// Calls fn(line, line number from 1) for each line of text, a trailing '\r' removed.
void for_each_line(const std::string& text, const std::function<void(const std::string&, int64_t)>& fn);
// "file '<path>' line <n>"
std::string line_where(const std::string& path, int64_t line);

}  // namespace cst::dataio
