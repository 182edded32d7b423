#include "dataio/cls_formats.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "common/error.h"
#include "common/json.h"

namespace cst::dataio {
namespace fs = std::filesystem;

ClsFormat parse_cls_format(const std::string& name) {
  if (name == "jsonl") return ClsFormat::kJsonl;
  if (name == "glue") return ClsFormat::kGlue;
  if (name == "lra-listops") return ClsFormat::kListOps;
  CST_THROW_INPUT("--task cls: --format '" << name << "' (jsonl, glue or lra-listops)");
}

const std::vector<std::string>& listops_vocabulary() {
  static const std::vector<std::string> kVocab = {"<pad>", "<unk>", "<s>", "</s>", "[MAX", "[MIN", "[MED",
                                                  "[SM",   "]",     "0",   "1",    "2",    "3",    "4",
                                                  "5",     "6",     "7",   "8",    "9"};
  return kVocab;
}

ClsTaskInfo cls_task_info(const ClsReadOptions& opt) {
  switch (opt.format) {
    case ClsFormat::kGlue: return glue_task_info(opt.glue_task);
    case ClsFormat::kListOps: return {"lra/listops", false, false, {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}};
    case ClsFormat::kJsonl: break;
  }
  return {"jsonl", !opt.jsonl_pair_field.empty(), false, {}};
}

std::vector<std::string> split_tsv(const std::string& line) {
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t tab; (tab = line.find('\t', at)) != std::string::npos; at = tab + 1)
    out.push_back(line.substr(at, tab - at));
  out.push_back(line.substr(at));
  return out;
}

void for_each_line(const std::string& text, const std::function<void(const std::string&, int64_t)>& fn) {
  std::string line;
  int64_t lineno = 0;
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    line.assign(text, at, end - at);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    fn(line, ++lineno);
    at = end + 1;
  }
}

std::string line_where(const std::string& path, int64_t line) {
  return "file '" + path + "' line " + std::to_string(line);
}

std::vector<ClsSplitFile> list_cls_splits(const std::string& input, const ClsReadOptions& opt) {
  std::error_code ec;
  CST_INPUT_CHECK(fs::exists(input, ec), "--input '" << input << "' does not exist");
  if (opt.format == ClsFormat::kGlue) return glue_split_files(input, opt.glue_task);
  if (fs::is_regular_file(input, ec)) return {{input, "", true}};
  const fs::path dir(input);
  std::vector<ClsSplitFile> out;
  const bool listops = opt.format == ClsFormat::kListOps;
  const std::vector<std::pair<std::string, std::string>> names =
      listops ? std::vector<std::pair<std::string, std::string>>{{"basic_train.tsv", "train"},
                                                                 {"basic_val.tsv", "validation"},
                                                                 {"basic_test.tsv", "test"}}
              : std::vector<std::pair<std::string, std::string>>{
                    {"train.jsonl", "train"}, {"validation.jsonl", "validation"}, {"test.jsonl", "test"}};
  for (const auto& [file, split] : names)
    if (fs::is_regular_file(dir / file, ec)) out.push_back({(dir / file).string(), split, split != "test"});
  CST_INPUT_CHECK(!out.empty(), "--input '" << input << "' holds none of " << names[0].first << ", " << names[1].first
                                            << ", " << names[2].first);
  return out;
}

namespace {

constexpr int64_t kShownSkips = 20;  // skipped rows reported one by one, per file

// One JSON line: the text field(s) and the label.
ClsRow jsonl_row(const std::string& line, const std::string& where, const ClsReadOptions& opt, bool labelled) {
  const Json doc = parse_json(line, where);
  CST_INPUT_CHECK(doc.is_object(), where << ": expected a JSON object, got " << doc.type_name());
  ClsRow row;
  auto text = [&](const std::string& field, std::string& out) {
    const auto it = doc.find(field);
    CST_INPUT_CHECK(it != doc.end(), where << " field '" << field << "': missing");
    CST_INPUT_CHECK(it->is_string(), where << " field '" << field << "': " << it->type_name() << ", not a string");
    out = it->get<std::string>();
  };
  text(opt.jsonl_field, row.a);
  if (!opt.jsonl_pair_field.empty()) text(opt.jsonl_pair_field, row.b);
  const auto it = doc.find(opt.jsonl_label_field);
  if (it == doc.end() || it->is_null()) {
    CST_INPUT_CHECK(!labelled, where << " field '" << opt.jsonl_label_field << "': missing (only a test file may "
                                     << "leave out labels)");
    return row;
  }
  row.has_label = true;
  if (it->is_number_integer()) {
    const int64_t v = it->get<int64_t>();
    CST_INPUT_CHECK(v >= 0 && v < (1 << 20),
                    where << " field '" << opt.jsonl_label_field << "': label " << v << " outside [0, 2^20)");
    row.int_label = true;
    row.label = std::to_string(v);
  } else {
    CST_INPUT_CHECK(it->is_string(), where << " field '" << opt.jsonl_label_field << "': " << it->type_name()
                                           << ", not an integer or a string");
    row.label = it->get<std::string>();
  }
  return row;
}

// One ListOps row: "Source\tTarget"; parentheses (LRA's files print the tree with them) are
// dropped, every other token must be in the vocabulary.
ClsRow listops_row(const std::vector<std::string>& f, const std::string& where, int src, int tgt, size_t columns) {
  CST_INPUT_CHECK(f.size() == columns, where << " column " << std::min(f.size(), columns) + 1 << ": " << f.size()
                                             << " columns, the header has " << columns);
  ClsRow row;
  const std::vector<std::string>& vocab = listops_vocabulary();
  size_t at = 0, word = 0;
  const std::string& s = f[static_cast<size_t>(src)];
  while ((at = s.find_first_not_of(" \t", at)) != std::string::npos) {
    const size_t end = std::min(s.find(' ', at), s.size());
    const std::string tok = s.substr(at, end - at);
    ++word;
    at = end;
    if (tok == "(" || tok == ")") continue;
    CST_INPUT_CHECK(std::find(vocab.begin() + 4, vocab.end(), tok) != vocab.end(),
                    where << " column " << src + 1 << " ('Source') word " << word << ": '" << tok
                          << "' is not a ListOps token ([MAX [MIN [MED [SM ] 0-9)");
    row.a += (row.a.empty() ? "" : " ") + tok;
  }
  if (tgt >= 0) {
    const std::string& t = f[static_cast<size_t>(tgt)];
    CST_INPUT_CHECK(t.size() == 1 && t[0] >= '0' && t[0] <= '9',
                    where << " column " << tgt + 1 << " ('Target'): '" << t << "' is not a digit 0-9");
    row.has_label = true;
    row.label = t;
  }
  return row;
}

void read_listops_rows(const ClsSplitFile& file, const std::string& text, const RowGuard& guard,
                       const std::function<void(ClsRow&&)>& on_row) {
  int src = -1, tgt = -1;
  size_t columns = 0;
  int64_t data_row = 0;
  for_each_line(text, [&](const std::string& line, int64_t lineno) {
    if (line.empty()) return;
    const std::vector<std::string> f = split_tsv(line);
    if (columns == 0) {
      for (size_t c = 0; c < f.size(); ++c) {
        if (f[c] == "Source") src = static_cast<int>(c);
        if (f[c] == "Target") tgt = static_cast<int>(c);
      }
      CST_INPUT_CHECK(src >= 0 && (tgt >= 0 || !file.labelled),
                      line_where(file.path, lineno) << ": the header '" << line << "' lacks 'Source' and 'Target'");
      columns = f.size();
      return;
    }
    const int64_t index = data_row++;
    guard([&] {
      ClsRow row = listops_row(f, line_where(file.path, lineno), src, tgt, columns);
      row.index = index;
      on_row(std::move(row));
    });
  });
  CST_INPUT_CHECK(columns > 0, "file '" << file.path << "' is empty (no 'Source\\tTarget' header)");
}

}  // namespace

int64_t read_cls_rows(const ClsSplitFile& file, const ClsReadOptions& opt, const ClsTaskInfo& info, bool skip_bad_rows,
                      bool verbose, const std::function<void(ClsRow&&)>& on_row) {
  std::string text = read_text_file(file.path, opt.encoding);
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);  // a UTF-8 byte order mark
  int64_t skipped = 0;
  const RowGuard guard = [&](const std::function<void()>& row) {
    try {
      row();
    } catch (const InputError& e) {
      if (!skip_bad_rows) throw;
      ++skipped;
      if (verbose && skipped <= kShownSkips) std::fprintf(stderr, "[cst-prep] skipped a bad row: %s\n", e.what());
      if (verbose && skipped == kShownSkips + 1)
        std::fprintf(stderr, "[cst-prep] more bad rows of '%s' skipped (counted, not shown)\n", file.path.c_str());
    }
  };
  if (opt.format == ClsFormat::kGlue) {
    read_glue_rows(file, text, info, guard, on_row);
  } else if (opt.format == ClsFormat::kListOps) {
    read_listops_rows(file, text, guard, on_row);
  } else {
    int64_t data_row = 0;
    for_each_line(text, [&](const std::string& line, int64_t lineno) {
      if (line.find_first_not_of(" \t") == std::string::npos) return;
      const int64_t index = data_row++;
      guard([&] {
        ClsRow row = jsonl_row(line, line_where(file.path, lineno), opt, file.labelled);
        row.index = index;
        on_row(std::move(row));
      });
    });
  }
  return skipped;
}

}  // namespace cst::dataio
