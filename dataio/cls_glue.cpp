// GLUE task folders as distributed by GLUE's download script (the columns that HF transformers'
// GLUE processors read). Every file but CoLA's train.tsv and dev.tsv has a header; columns are
// found by their header names:
//
//   task   text a      text b      label          labels (ids in this order)
//   CoLA   sentence*   -           label*         0, 1       (*train/dev: no header; columns
//                                                             source, label, original label, sentence)
//   SST-2  sentence    -           label          0, 1
//   MRPC   #1 String   #2 String   Quality        0, 1
//   QQP    question1   question2   is_duplicate   0, 1
//   STS-B  sentence1   sentence2   score          a float (regression)
//   MNLI   sentence1   sentence2   gold_label     contradiction, entailment, neutral
//   QNLI   question    sentence    label          entailment, not_entailment
//   RTE    sentence1   sentence2   label          entailment, not_entailment
//   WNLI   sentence1   sentence2   label          0, 1
//
// example_index is the `index` column (QQP: `id`) where the file has one, else the data row's
// number (0 = the first row after the header). Test files have no label column.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "common/error.h"
#include "dataio/cls_formats.h"

namespace cst::dataio {
namespace fs = std::filesystem;
namespace {

struct GlueTask {
  const char* name;                 // --glue-task
  const char* folder;               // the task's folder in the GLUE root
  const char* a;                    // header name of the first text
  const char* b;                    // of the second text ("" = single text)
  const char* label;                // of the label
  std::vector<std::string> labels;  // empty: regression
};

const std::vector<GlueTask>& glue_tasks() {
  static const std::vector<GlueTask> kTasks = {
      {"cola", "CoLA", "sentence", "", "label", {"0", "1"}},
      {"sst-2", "SST-2", "sentence", "", "label", {"0", "1"}},
      {"mrpc", "MRPC", "#1 String", "#2 String", "Quality", {"0", "1"}},
      {"qqp", "QQP", "question1", "question2", "is_duplicate", {"0", "1"}},
      {"sts-b", "STS-B", "sentence1", "sentence2", "score", {}},
      {"mnli", "MNLI", "sentence1", "sentence2", "gold_label", {"contradiction", "entailment", "neutral"}},
      {"qnli", "QNLI", "question", "sentence", "label", {"entailment", "not_entailment"}},
      {"rte", "RTE", "sentence1", "sentence2", "label", {"entailment", "not_entailment"}},
      {"wnli", "WNLI", "sentence1", "sentence2", "label", {"0", "1"}}};
  return kTasks;
}

const GlueTask& glue_task(const std::string& name) {
  std::string key;
  for (char c : name) key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (key == "sst2") key = "sst-2";
  if (key == "stsb") key = "sts-b";
  for (const GlueTask& t : glue_tasks())
    if (key == t.name) return t;
  CST_THROW_INPUT("--glue-task '" << name << "' (cola, sst-2, mrpc, qqp, sts-b, mnli, qnli, rte, wnli)");
}

// Where a file's columns are (-1 = absent).
struct Columns {
  int a = -1, b = -1, label = -1, index = -1;
  size_t count = 0;  // columns of every row
};

Columns header_columns(const GlueTask& t, const std::vector<std::string>& header, const ClsSplitFile& file) {
  Columns c;
  c.count = header.size();
  for (size_t i = 0; i < header.size(); ++i) {
    const std::string& h = header[i];
    const int col = static_cast<int>(i);
    if (h == t.a) c.a = col;
    if (*t.b && h == t.b) c.b = col;
    if (h == t.label) c.label = col;
    if (h == "index" || (h == "id" && c.index < 0)) c.index = col;
  }
  CST_INPUT_CHECK(c.a >= 0 && (!*t.b || c.b >= 0) && (c.label >= 0 || !file.labelled),
                  line_where(file.path, 1)
                      << ": GLUE " << t.folder << " needs columns '" << t.a << "'"
                      << (*t.b ? std::string(", '") + t.b + "'" : std::string())
                      << (file.labelled ? std::string(", '") + t.label + "'" : std::string()) << " in its header");
  return c;
}

}  // namespace

ClsTaskInfo glue_task_info(const std::string& name) {
  const GlueTask& t = glue_task(name);
  ClsTaskInfo info;
  info.task = std::string("glue/") + t.name;
  info.pair = *t.b != 0;
  info.regression = t.labels.empty();
  info.label_names = t.labels;
  return info;
}

std::vector<ClsSplitFile> glue_split_files(const std::string& input, const std::string& name) {
  const GlueTask& t = glue_task(name);
  fs::path dir(input);
  std::error_code ec;
  if (!fs::is_regular_file(dir / "train.tsv", ec) && fs::is_directory(dir / t.folder, ec)) dir /= t.folder;
  const bool mnli = std::string(t.name) == "mnli";
  const std::vector<std::pair<std::string, std::string>> names =
      mnli ? std::vector<std::pair<std::string, std::string>>{{"train", "train"},
                                                              {"dev_matched", "validation_matched"},
                                                              {"dev_mismatched", "validation_mismatched"},
                                                              {"test_matched", "test_matched"},
                                                              {"test_mismatched", "test_mismatched"}}
           : std::vector<std::pair<std::string, std::string>>{
                 {"train", "train"}, {"dev", "validation"}, {"test", "test"}};
  // One file of the task (e.g. only its test.tsv, to score): its split from its name.
  const bool one = fs::is_regular_file(dir, ec);
  std::vector<ClsSplitFile> out;
  for (const auto& [file, split] : names) {
    const fs::path path = one ? dir : dir / (file + ".tsv");
    if ((!one || dir.filename() == file + ".tsv") && fs::is_regular_file(path, ec))
      out.push_back({path.string(), split, split.rfind("test", 0) != 0});
  }
  CST_INPUT_CHECK(!out.empty(), "--input '" << input << "' " << (one ? "is" : "holds") << " no GLUE " << t.folder
                                            << " file (" << names[0].first << ".tsv, " << names[1].first
                                            << ".tsv, ...)");
  return out;
}

void read_glue_rows(const ClsSplitFile& file, const std::string& text, const ClsTaskInfo& info, const RowGuard& guard,
                    const std::function<void(ClsRow&&)>& on_row) {
  const GlueTask& t = glue_task(info.task.substr(5));
  std::vector<std::string> header;
  Columns c;
  int64_t data_row = 0;
  bool first = true;
  for_each_line(text, [&](const std::string& line, int64_t lineno) {
    if (line.empty()) return;
    std::vector<std::string> f = split_tsv(line);
    if (first) {
      first = false;
      // CoLA's train.tsv and dev.tsv have no header: source, label, original label, sentence.
      if (std::string(t.name) == "cola" && f[0] != "index") {
        header = {"source", "label", "original label", "sentence"};
        c = {3, -1, 1, -1, 4};
      } else {
        header = f;
        c = header_columns(t, header, file);
        return;
      }
    }
    const int64_t row_number = data_row++;
    guard([&] {
      const std::string where = line_where(file.path, lineno);
      CST_INPUT_CHECK(f.size() == c.count, where << " column " << std::min(f.size(), c.count) + 1 << ": " << f.size()
                                                 << " columns, " << c.count << " expected");
      auto at = [&](int col) -> const std::string& { return f[static_cast<size_t>(col)]; };
      auto bad = [&](int col) {
        return where + " column " + std::to_string(col + 1) + " ('" + header[static_cast<size_t>(col)] + "')";
      };
      ClsRow row;
      row.a = at(c.a);
      if (c.b >= 0) row.b = at(c.b);
      row.index = row_number;
      if (c.index >= 0) {
        char* end = nullptr;
        const long long v = std::strtoll(at(c.index).c_str(), &end, 10);
        CST_INPUT_CHECK(!at(c.index).empty() && *end == 0 && v >= 0,
                        bad(c.index) << ": index '" << at(c.index) << "' is not an integer >= 0");
        row.index = v;
      }
      if (c.label >= 0) {
        row.label = at(c.label);
        row.has_label = true;
        if (info.regression) {
          char* end = nullptr;
          const double v = std::strtod(row.label.c_str(), &end);
          CST_INPUT_CHECK(!row.label.empty() && *end == 0 && std::isfinite(v),
                          bad(c.label) << ": score '" << row.label << "' is not a number");
        } else {
          bool known = false;
          for (const std::string& n : info.label_names) known = known || n == row.label;
          CST_INPUT_CHECK(known, bad(c.label)
                                     << ": label '" << row.label << "' is not one of GLUE " << t.folder << "'s labels");
        }
      }
      on_row(std::move(row));
    });
  });
  CST_INPUT_CHECK(!first, "file '" << file.path << "' is empty");
}

}  // namespace cst::dataio
