// Raw-text inputs of cst-prep: listing the files of a corpus and reading its documents.
//
//   pg19           <input>/{train,validation,test}/<book_id>.txt, one book per file; the split
//                  is the folder (train required, the others optional).
//   wikiextractor  every file below <input> (e.g. AA/wiki_00) holding
//                  <doc id=".." url=".." title="..">...</doc> blocks, one document per block.
//   jsonl          every *.jsonl / *.json file below <input> (or <input> itself), one JSON
//                  object per line; the document is the string field `jsonl_field`.
//   txt            every *.txt file below <input> (or <input> itself), one document per file
//                  (BookCorpus's layout).
// Files are visited in lexicographic order of their path relative to <input>. For all but
// pg19, a document's split is drawn from a hash of (relative path, document number in file).
// Every file is read as UTF-8 (checked: a file that is not, or holds a NUL byte, i.e. a binary
// file, is an error naming it and the byte offset) or, with TextEncoding::kLatin1, converted from
// ISO-8859-1.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cst::dataio {

enum class InputFormat { kAuto, kPg19, kWikiExtractor, kJsonl, kTxt };
InputFormat parse_input_format(const std::string& name);  // InputError naming the value
const char* input_format_name(InputFormat f);

enum class Split : int8_t { kTrain = 0, kValidation = 1, kTest = 2 };
inline constexpr int kNumSplits = 3;
const char* split_name(Split s);  // "train", "validation", "test"

enum class TextEncoding { kUtf8, kLatin1 };
TextEncoding parse_text_encoding(const std::string& name);  // "utf-8" | "latin-1"; InputError else

// `bytes` (read from `path`) as UTF-8 text: checked (kUtf8) or converted (kLatin1). Throws
// InputError "file '<path>': not UTF-8 text at byte offset <n> (...)" on an invalid UTF-8
// sequence (overlong forms, surrogates and code points above U+10FFFF included) and on a NUL byte.
std::string decode_text(std::string bytes, TextEncoding encoding, const std::string& path);

// The whole file as UTF-8 text (decode_text). Throws InputError naming the file when it cannot be
// read.
std::string read_text_file(const std::string& path, TextEncoding encoding);

struct InputFile {
  std::string path;  // as opened
  std::string rel;   // relative to the input root (hashing, messages)
  int split = -1;    // pg19: the folder's Split; -1: decided per document
  int64_t bytes = 0;
};

// The input files in deterministic order. `format` kAuto is resolved: pg19 if <input>/train is
// a folder, jsonl if <input> is or holds *.jsonl files, wikiextractor if it holds wiki_* files,
// else txt. Throws InputError when <input> is missing or holds no input file.
std::vector<InputFile> list_inputs(const std::string& input, InputFormat& format);

// Calls on_doc(text) for each document of `file` in order. Throws InputError naming the file
// (and line) when it cannot be read or is malformed.
void read_documents(const InputFile& file, InputFormat format, const std::string& jsonl_field, TextEncoding encoding,
                    const std::function<void(std::string&&)>& on_doc);

// The split of document `doc` of a file without a folder split.
Split assign_split(const InputFile& file, int64_t doc, double valid_fraction, double test_fraction);

// Sentences of a text: pieces ending in . ! or ? followed by white space, and line breaks.
// Trimmed; empty pieces dropped.
std::vector<std::string> split_sentences(const std::string& text);

// The string value of top-level field `field` of a one-line JSON object (common/json.h:
// escapes decoded, \uXXXX to UTF-8, surrogate pairs checked, UTF-8 validated). Throws InputError
// naming `where` (file and line) and what is wrong when the line is not valid JSON, nests deeper
// than common/json.h's kJsonMaxDepth, is not an object, or lacks the string field.
std::string json_string_field(const std::string& line, const std::string& field, const std::string& where);

}  // namespace cst::dataio
