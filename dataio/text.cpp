#include "dataio/text.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/json.h"
#include "dataio/rng.h"

namespace cst::dataio {
namespace fs = std::filesystem;

InputFormat parse_input_format(const std::string& name) {
  for (InputFormat f :
       {InputFormat::kAuto, InputFormat::kPg19, InputFormat::kWikiExtractor, InputFormat::kJsonl, InputFormat::kTxt})
    if (name == input_format_name(f)) return f;
  CST_THROW_INPUT("unknown input format '" << name << "' (auto, pg19, wikiextractor, jsonl, txt)");
}

const char* input_format_name(InputFormat f) {
  switch (f) {
    case InputFormat::kAuto: return "auto";
    case InputFormat::kPg19: return "pg19";
    case InputFormat::kWikiExtractor: return "wikiextractor";
    case InputFormat::kJsonl: return "jsonl";
    case InputFormat::kTxt: return "txt";
  }
  return "?";
}

const char* split_name(Split s) {
  switch (s) {
    case Split::kTrain: return "train";
    case Split::kValidation: return "validation";
    case Split::kTest: return "test";
  }
  return "?";
}

namespace {

bool has_ext(const fs::path& p, std::initializer_list<const char*> exts) {
  for (const char* e : exts)
    if (p.extension() == e) return true;
  return false;
}

// Regular, non-hidden files below root (or root itself) accepted by keep, sorted by rel path.
std::vector<InputFile> collect(const fs::path& root, const std::function<bool(const fs::path&)>& keep, int split) {
  std::vector<InputFile> out;
  auto add = [&](const fs::path& p) {
    std::string rel = fs::relative(p, fs::is_directory(root) ? root : root.parent_path()).generic_string();
    out.push_back({p.string(), rel, split, static_cast<int64_t>(fs::file_size(p))});
  };
  if (fs::is_regular_file(root)) {
    add(root);
    return out;
  }
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file() && keep(it->path())) add(it->path());
  }
  std::sort(out.begin(), out.end(), [](const InputFile& a, const InputFile& b) { return a.rel < b.rel; });
  return out;
}

bool any_file(const fs::path& root, const std::function<bool(const fs::path&)>& keep) {
  if (fs::is_regular_file(root)) return keep(root);
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file() && keep(e.path())) return true;
  return false;
}

// Length of the valid UTF-8 sequence at s[i], or 0 (RFC 3629: no overlong forms, surrogates or
// code points above U+10FFFF).
size_t utf8_length(const std::string& s, size_t i) {
  const auto b = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  const auto cont = [&](size_t k) { return (b(k) & 0xC0u) == 0x80u; };
  const unsigned c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    const unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return b(1) >= lo && b(1) <= hi && cont(2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    const unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return b(1) >= lo && b(1) <= hi && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

}  // namespace

TextEncoding parse_text_encoding(const std::string& name) {
  if (name == "utf-8") return TextEncoding::kUtf8;
  if (name == "latin-1") return TextEncoding::kLatin1;
  CST_THROW_INPUT("--encoding '" << name << "' (utf-8 or latin-1)");
}

std::string decode_text(std::string bytes, TextEncoding encoding, const std::string& path) {
  const size_t nul = bytes.find('\0');
  CST_INPUT_CHECK(nul == std::string::npos,
                  "file '" << path << "': not text at byte offset " << nul << " (a NUL byte: a binary file?)");
  if (encoding == TextEncoding::kLatin1) {
    std::string out;
    out.reserve(bytes.size());
    for (const char ch : bytes) {
      const auto c = static_cast<unsigned char>(ch);
      if (c < 0x80) {
        out += ch;
      } else {
        out += static_cast<char>(0xC0 | (c >> 6));
        out += static_cast<char>(0x80 | (c & 0x3F));
      }
    }
    return out;
  }
  for (size_t i = 0; i < bytes.size();) {
    const size_t n = utf8_length(bytes, i);
    CST_INPUT_CHECK(n > 0, "file '" << path << "': not UTF-8 text at byte offset " << i << " (byte 0x" << std::hex
                                    << static_cast<unsigned>(static_cast<unsigned char>(bytes[i])) << std::dec
                                    << "; a binary file, or give --encoding latin-1 for ISO-8859-1 text)");
    i += n;
  }
  return bytes;
}

std::string read_text_file(const std::string& path, TextEncoding encoding) {
  std::ifstream in(path, std::ios::binary);
  CST_INPUT_CHECK(in.good(), "cannot read input file '" << path << "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  CST_INPUT_CHECK(!in.bad(), "error reading input file '" << path << "'");
  return decode_text(ss.str(), encoding, path);
}

std::vector<InputFile> list_inputs(const std::string& input, InputFormat& format) {
  const fs::path root(input);
  std::error_code ec;
  CST_INPUT_CHECK(fs::exists(root, ec), "input '" << input << "' does not exist");
  auto is_txt = [](const fs::path& p) { return has_ext(p, {".txt"}); };
  auto is_json = [](const fs::path& p) { return has_ext(p, {".jsonl", ".json"}); };
  auto is_wiki = [](const fs::path& p) { return p.filename().string().rfind("wiki_", 0) == 0; };
  if (format == InputFormat::kAuto) {
    if (fs::is_directory(root / "train"))
      format = InputFormat::kPg19;
    else if (any_file(root, is_json))
      format = InputFormat::kJsonl;
    else if (any_file(root, is_wiki))
      format = InputFormat::kWikiExtractor;
    else
      format = InputFormat::kTxt;
  }
  std::vector<InputFile> files;
  switch (format) {
    case InputFormat::kPg19:
      CST_INPUT_CHECK(fs::is_directory(root / "train"), "pg19 input '" << input << "' has no train/ folder");
      for (Split s : {Split::kTrain, Split::kValidation, Split::kTest}) {
        const fs::path dir = root / split_name(s);
        if (!fs::is_directory(dir)) continue;
        for (InputFile& f : collect(dir, is_txt, static_cast<int>(s))) {
          f.rel = std::string(split_name(s)) + "/" + f.rel;
          files.push_back(std::move(f));
        }
      }
      break;
    case InputFormat::kJsonl: files = collect(root, is_json, -1); break;
    case InputFormat::kWikiExtractor:
      files = collect(
          root, [](const fs::path&) { return true; }, -1);
      break;
    default: files = collect(root, is_txt, -1); break;
  }
  CST_INPUT_CHECK(!files.empty(), "input '" << input << "' holds no " << input_format_name(format) << " input file");
  return files;
}

void read_documents(const InputFile& file, InputFormat format, const std::string& jsonl_field, TextEncoding encoding,
                    const std::function<void(std::string&&)>& on_doc) {
  const std::string text = read_text_file(file.path, encoding);
  if (format == InputFormat::kPg19 || format == InputFormat::kTxt) {
    on_doc(std::string(text));
    return;
  }
  std::istringstream in(text);
  std::string line, doc;
  int64_t lineno = 0, doc_line = 0;
  bool in_doc = false;
  while (std::getline(in, line)) {
    ++lineno;
    if (format == InputFormat::kJsonl) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      on_doc(json_string_field(line, jsonl_field, "file '" + file.path + "' line " + std::to_string(lineno)));
    } else if (!in_doc && line.rfind("<doc", 0) == 0) {
      in_doc = true;
      doc_line = lineno;
      doc.clear();
    } else if (in_doc && line.rfind("</doc>", 0) == 0) {
      in_doc = false;
      on_doc(std::move(doc));
      doc.clear();
    } else if (in_doc) {
      doc += line;
      doc += '\n';
    }
  }
  CST_INPUT_CHECK(!in_doc, "file '" << file.path << "' line " << doc_line << ": <doc> not closed by </doc>");
}

Split assign_split(const InputFile& file, int64_t doc, double valid_fraction, double test_fraction) {
  if (file.split >= 0) return static_cast<Split>(file.split);
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a of the relative path
  for (unsigned char c : file.rel) h = (h ^ c) * 0x100000001b3ULL;
  const double u = unit(mix(h, static_cast<uint64_t>(doc)));
  if (u < valid_fraction) return Split::kValidation;
  if (u < valid_fraction + test_fraction) return Split::kTest;
  return Split::kTrain;
}

std::vector<std::string> split_sentences(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    const size_t a = cur.find_first_not_of(" \t\r\n"), b = cur.find_last_not_of(" \t\r\n");
    if (a != std::string::npos) out.push_back(cur.substr(a, b - a + 1));
    cur.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      flush();
      continue;
    }
    cur += c;
    const bool end_mark = c == '.' || c == '!' || c == '?';
    if (end_mark && (i + 1 == text.size() || text[i + 1] == ' ' || text[i + 1] == '\t')) flush();
  }
  flush();
  return out;
}

std::string json_string_field(const std::string& line, const std::string& field, const std::string& where) {
  const Json doc = parse_json(line, where);
  CST_INPUT_CHECK(doc.is_object(), where << ": expected a JSON object, got " << doc.type_name());
  const auto it = doc.find(field);
  CST_INPUT_CHECK(it != doc.end(), where << ": no string field '" << field << "'");
  CST_INPUT_CHECK(it->is_string(), where << ": field '" << field << "' is " << it->type_name() << ", not a string");
  return it->get<std::string>();
}

}  // namespace cst::dataio
