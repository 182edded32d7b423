// cst-prep's pieces: text readers, the JSON field reader, and prep -> read round trips.
#include "dataio/prep.h"

#include <sentencepiece_processor.h>

#include <filesystem>
#include <fstream>

#include "common/h5.h"
#include "dataio/blend.h"
#include "dataio/loader.h"
#include "dataio/text.h"
#include "test_util.h"

namespace cst::dataio {
namespace {
using testing::expect_input_error;
using testing::TempDir;

void write_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

// Deterministic pseudo-English: `words` words, sentences and lines of varying length.
std::string gen_text(uint64_t seed, int words) {
  static const char* kWords[] = {"the", "of",  "and",  "to", "in",    "a",   "is",   "that", "for",  "it",
                                 "as",  "was", "with", "be", "by",    "on",  "not",  "he",   "this", "are",
                                 "or",  "his", "from", "at", "which", "but", "have", "an",   "they", "you"};
  std::string out;
  for (int i = 0; i < words; ++i) {
    const uint64_t h = counter_hash(seed, static_cast<uint64_t>(i));
    out += kWords[h % 30];
    out += h % 11 == 0 ? ". " : " ";
    if (h % 17 == 0) out.back() = '\n';
  }
  return out + ".\n";
}

TEST(Text, JsonStringField) {
  const std::string w = "f line 1";
  EXPECT_EQ(json_string_field(R"({"id": 3, "text": "a\"b\\c\nd\u00e9\ud83d\ude00"})", "text", w),
            "a\"b\\c\nd\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(json_string_field(R"({"meta": {"text": "no", "x": [1, "]", {}]}, "text": "yes"})", "text", w), "yes");
  expect_input_error([&] { json_string_field(R"({"id": 3})", "text", w); }, {"f line 1", "no string field 'text'"});
  expect_input_error([&] { json_string_field(R"({"text": 5})", "text", w); }, {"f line 1", "not a string"});
  expect_input_error([&] { json_string_field(R"({"text": "abc)", "text", w); }, {"f line 1", "missing closing quote"});
  expect_input_error([&] { json_string_field("[1, 2]", "text", w); }, {"f line 1", "expected a JSON object"});
  expect_input_error([&] { json_string_field(R"({"text": "a"} x)", "text", w); }, {"f line 1", "not valid JSON"});
}

// Damaged lines end in an InputError naming the file and line, never in a crash: a million
// nested brackets (a recursive reader overflows its stack), bad \u escapes, lone surrogates,
// ill-formed UTF-8.
TEST(Text, JsonDamagedLinesAreInputErrors) {
  const std::string w = "file 'c.jsonl' line 7";
  const std::string deep = R"({"meta": )" + std::string(1000000, '[') + std::string(1000000, ']') + R"(, "text": "x"})";
  expect_input_error([&] { json_string_field(deep, "text", w); }, {"c.jsonl' line 7", "nested deeper than 64"});
  const std::string ok_depth = R"({"meta": )" + std::string(60, '[') + std::string(60, ']') + R"(, "text": "x"})";
  EXPECT_EQ(json_string_field(ok_depth, "text", w), "x");
  expect_input_error([&] { json_string_field(R"({"text": "\u12G4"})", "text", w); }, {"line 7", "4 hex digits"});
  expect_input_error([&] { json_string_field(R"({"text": "\u12")", "text", w); }, {"line 7", "not valid JSON"});
  expect_input_error([&] { json_string_field(R"({"text": "\ud800x"})", "text", w); }, {"line 7", "surrogate"});
  expect_input_error([&] { json_string_field(R"({"text": "\udc00"})", "text", w); }, {"line 7", "surrogate"});
  expect_input_error([&] { json_string_field("{\"text\": \"\xff\xfe\"}", "text", w); }, {"line 7", "UTF-8"});
  expect_input_error([&] { json_string_field(R"({"text": "a\qb"})", "text", w); }, {"line 7", "not valid JSON"});
}

TEST(Text, JsonlFileErrorsNameFileAndLine) {
  TempDir dir;
  write_text(dir.file("c/a.jsonl"), "{\"text\": \"one\"}\n\n{\"text\": " + std::string(100000, '[') + "\n");
  InputFormat f = InputFormat::kJsonl;
  const auto files = list_inputs(dir.file("c"), f);
  std::vector<std::string> docs;
  expect_input_error(
      [&] { read_documents(files[0], f, "text", TextEncoding::kUtf8, [&](std::string&& d) { docs.push_back(d); }); },
      {"a.jsonl' line 3", "nested deeper than 64"});
  EXPECT_EQ(docs, std::vector<std::string>{"one"});
}

TEST(Text, SplitSentences) {
  EXPECT_EQ(split_sentences("One two. Three? Four!\nFive 3.5 six\n\n  "),
            (std::vector<std::string>{"One two.", "Three?", "Four!", "Five 3.5 six"}));
}

TEST(Text, WikiExtractorAndJsonlDocuments) {
  TempDir dir;
  write_text(
      dir.file("wiki/AA/wiki_00"),
      "<doc id=\"1\" url=\"u\" title=\"A\">\nA\n\nText one.\n</doc>\n<doc id=\"2\" title=\"B\">\nB\nTwo.\n</doc>\n");
  write_text(dir.file("wiki/AB/wiki_00"), "<doc id=\"3\" title=\"C\">\nC\n");
  InputFormat f = InputFormat::kAuto;
  const auto files = list_inputs(dir.file("wiki"), f);
  ASSERT_EQ(f, InputFormat::kWikiExtractor);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].rel, "AA/wiki_00");
  std::vector<std::string> docs;
  read_documents(files[0], f, "text", TextEncoding::kUtf8, [&](std::string&& d) { docs.push_back(d); });
  EXPECT_EQ(docs, (std::vector<std::string>{"A\n\nText one.\n", "B\nTwo.\n"}));
  expect_input_error([&] { read_documents(files[1], f, "text", TextEncoding::kUtf8, [](std::string&&) {}); },
                     {"AB/wiki_00", "line 1", "not closed"});

  write_text(dir.file("j/x.jsonl"), "{\"text\": \"d1\"}\n\n{\"text\": \"d2\"}\n{\"title\": 1}\n");
  f = InputFormat::kAuto;
  const auto jf = list_inputs(dir.file("j"), f);
  ASSERT_EQ(f, InputFormat::kJsonl);
  docs.clear();
  expect_input_error(
      [&] { read_documents(jf[0], f, "text", TextEncoding::kUtf8, [&](std::string&& d) { docs.push_back(d); }); },
      {"x.jsonl", "line 4", "no string field"});
  EXPECT_EQ(docs, (std::vector<std::string>{"d1", "d2"}));
}

TEST(Text, InputListingErrors) {
  TempDir dir;
  InputFormat f = InputFormat::kAuto;
  expect_input_error([&] { list_inputs(dir.file("missing"), f); }, {"missing", "does not exist"});
  std::filesystem::create_directories(dir.file("empty"));
  f = InputFormat::kAuto;
  expect_input_error([&] { list_inputs(dir.file("empty"), f); }, {"empty", "no txt input file"});
  expect_input_error(
      [&] {
        read_documents({dir.file("gone.txt"), "gone.txt", -1, 0}, InputFormat::kTxt, "text", TextEncoding::kUtf8,
                       [](std::string&&) {});
      },
      {"gone.txt", "cannot read"});
  expect_input_error([&] { parse_input_format("csv"); }, {"'csv'"});
}

TEST(Text, Utf8CheckedLatin1ConvertedBinaryRefused) {
  EXPECT_EQ(decode_text("caf\xc3\xa9 \xf0\x9f\x93\x96", TextEncoding::kUtf8, "a.txt"), "caf\xc3\xa9 \xf0\x9f\x93\x96");
  EXPECT_EQ(decode_text("caf\xe9 \xff", TextEncoding::kLatin1, "a.txt"), "caf\xc3\xa9 \xc3\xbf");
  // A stray byte, a cut sequence, an overlong '/', a surrogate, above U+10FFFF, a NUL (binary).
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"ab\xe9", "offset 2"},         {"abc\xe2\x82", "offset 3"},      {"a\xc0\xaf", "offset 1"},
      {"xy\xed\xa0\x80", "offset 2"}, {"\xf4\x90\x80\x80", "offset 0"}, {std::string("abcd\0e", 6), "offset 4"}};
  for (const auto& [bytes, where] : bad)
    expect_input_error([&] { decode_text(bytes, TextEncoding::kUtf8, "a.txt"); }, {"'a.txt'", where});
  expect_input_error([&] { decode_text(std::string("a\0", 2), TextEncoding::kLatin1, "b.bin"); },
                     {"'b.bin'", "offset 1", "NUL"});
  expect_input_error([&] { parse_text_encoding("utf-16"); }, {"'utf-16'", "latin-1"});
  // Every reader goes through it: txt, jsonl and wikiextractor files alike.
  TempDir dir;
  write_text(dir.file("t.txt"), "good text\nthen \xff\xfe bad");
  write_text(dir.file("j.jsonl"), "{\"text\": \"ok\"}\n{\"text\": \"caf\xe9\"}\n");
  write_text(dir.file("w/wiki_00"), "<doc id=\"1\">\nx\x80\n</doc>\n");
  const std::vector<std::tuple<std::string, std::string, InputFormat>> files = {
      {"t.txt", "offset 15", InputFormat::kTxt},
      {"j.jsonl", "offset 28", InputFormat::kJsonl},
      {"w/wiki_00", "offset 14", InputFormat::kWikiExtractor}};
  for (const auto& [name, where, format] : files) {
    const InputFile f{dir.file(name), name, -1, 0};
    expect_input_error([&] { read_documents(f, format, "text", TextEncoding::kUtf8, [](std::string&&) {}); },
                       {dir.file(name), where});
    std::vector<std::string> docs;
    read_documents(f, format, "text", TextEncoding::kLatin1, [&](std::string&& d) { docs.push_back(d); });
    EXPECT_FALSE(docs.empty()) << name;
  }
}

PrepOptions prep_opts(const TempDir& dir, const std::string& input, SampleKind task) {
  PrepOptions o;
  o.inputs = {{dir.file(input), InputFormat::kAuto, ""}};
  o.output = dir.file("out");
  o.task = task;
  o.vocab_size = 200;
  o.shard_tokens = 2000;
  o.shard_rows = 40;
  o.seq_len = 24;
  o.progress = false;
  return o;
}

// Reads every token of a split's LM shards in file order, with the documents' boundaries.
std::vector<std::vector<int32_t>> lm_documents(const std::string& dir) {
  std::vector<std::vector<int32_t>> docs;
  for (const auto& path : list_shards(dir)) {
    h5::File f(path, h5::File::Mode::kRead);
    const auto t = f.open("tokens").read<int32_t>();
    const auto off = f.open("doc_offsets").read<int64_t>();
    for (size_t d = 0; d + 1 < off.size(); ++d) docs.emplace_back(t.begin() + off[d], t.begin() + off[d + 1]);
  }
  return docs;
}

TEST(Prep, LmRoundTripsTheText) {
  TempDir dir;
  std::vector<std::string> books;
  for (int b = 0; b < 4; ++b) {
    books.push_back(gen_text(static_cast<uint64_t>(b), 700));
    write_text(dir.file("pg19/train/" + std::to_string(100 + b) + ".txt"), books.back());
  }
  write_text(dir.file("pg19/validation/200.txt"), gen_text(9, 400));
  const PrepSummary sum = run_prep(prep_opts(dir, "pg19", SampleKind::kLm), {});
  ASSERT_EQ(sum.corpora.size(), 1u);
  EXPECT_EQ(sum.corpora[0].dir, dir.file("out"));
  EXPECT_EQ(sum.corpora[0].documents[0], 4);
  EXPECT_EQ(sum.corpora[0].documents[1], 1);
  EXPECT_GE(sum.corpora[0].shards[0], 2);
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(dir.file("out/tokenizer.model")).ok());
  EXPECT_EQ(sum.tokenizer_sha256, sha256_file(dir.file("out/tokenizer.model")));
  const auto docs = lm_documents(dir.file("out/train"));
  ASSERT_EQ(docs.size(), 4u);
  for (size_t b = 0; b < docs.size(); ++b) {
    ASSERT_EQ(docs[b].back(), sp.eos_id());
    std::string text;
    ASSERT_TRUE(sp.Decode(std::vector<int>(docs[b].begin(), docs[b].end() - 1), &text).ok());
    std::string want;  // lines joined by single spaces, as SentencePiece normalises them
    for (char c : books[b]) want += c == '\n' ? ' ' : c;
    while (!want.empty() && want.back() == ' ') want.pop_back();
    EXPECT_EQ(text, want) << "book " << b;
  }
  // The loader's evaluation pass reads exactly the shards' windows.
  SourceOptions so;
  so.seq_len = 31;
  so.vocab_size = sum.vocab_size;
  so.tokenizer_sha256 = sum.tokenizer_sha256;
  auto src = std::make_shared<Hdf5Source>(list_shards(dir.file("out/train")), so);
  LoaderOptions lo;
  lo.global_batch = 8;
  lo.train = false;
  Loader loader(src, lo);
  std::vector<int32_t> streamed, want;
  while (auto b = loader.next()) streamed.insert(streamed.end(), b->input_ids.begin(), b->input_ids.end());
  for (const auto& path : list_shards(dir.file("out/train"))) {
    const auto t = h5::File(path, h5::File::Mode::kRead).open("tokens").read<int32_t>();
    want.insert(want.end(), t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 32 * 32));
  }
  EXPECT_EQ(streamed, want);
}

TEST(Prep, MlmRowsPackSentences) {
  TempDir dir;
  std::string jsonl;
  for (int d = 0; d < 30; ++d) {
    std::string t = gen_text(static_cast<uint64_t>(d), 60);
    for (char& c : t) c = c == '\n' ? ' ' : c;
    jsonl += "{\"text\": \"" + t + "\"}\n";
  }
  write_text(dir.file("j/a.jsonl"), jsonl);
  PrepOptions o = prep_opts(dir, "j", SampleKind::kMlm);
  o.valid_fraction = 0.2;
  const PrepSummary sum = run_prep(o, {});
  const CorpusSummary& c = sum.corpora.at(0);
  EXPECT_EQ(c.documents[0] + c.documents[1], 30);
  EXPECT_GT(c.documents[1], 0);
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(dir.file("out/tokenizer.model")).ok());
  const int mask_id = sp.PieceToId("[MASK]");
  SourceOptions so;
  so.kind = SampleKind::kMlm;
  so.seq_len = 24;
  Hdf5Source src(list_shards(dir.file("out/train")), so);
  EXPECT_EQ(src.num_samples(), c.samples[0]);
  EXPECT_EQ(src.special().mask, mask_id);
  for (int64_t r = 0; r < src.num_samples(); ++r) {
    std::vector<int32_t> ids(24), labels(24);
    std::vector<uint8_t> m(24), seg(24);
    int8_t nsp;
    src.read(r, {ids.data(), m.data(), seg.data(), labels.data(), &nsp});
    ASSERT_EQ(ids[0], sp.bos_id());
    int len = 0;
    while (len < 24 && m[static_cast<size_t>(len)]) ++len;
    ASSERT_GE(len, 3);
    EXPECT_EQ(ids[static_cast<size_t>(len - 1)], sp.eos_id()) << "row " << r;
    for (int c = len; c < 24; ++c) EXPECT_EQ(ids[static_cast<size_t>(c)], sp.pad_id());
  }
}

TEST(Prep, BadInputs) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("empty"));
  expect_input_error([&] { run_prep(prep_opts(dir, "empty", SampleKind::kLm), {}); }, {"empty"});
  write_text(dir.file("blank/a.txt"), "\n  \n");
  expect_input_error([&] { run_prep(prep_opts(dir, "blank", SampleKind::kLm), {}); }, {"blank", "no text"});
  PrepOptions o = prep_opts(dir, "blank", SampleKind::kLm);
  o.tokenizer = dir.file("none.model");
  expect_input_error([&] { run_prep(o, {}); }, {"none.model"});
  o.vocab_size = 3;
  expect_input_error([&] { run_prep(o, {}); }, {"vocab size 3"});
}

TEST(Prep, InputsOfTheCommandLine) {
  const auto in = parse_prep_inputs({"data/wiki/", "books=/raw/bookcorpus/txt", "x/pg19.jsonl"}, {});
  ASSERT_EQ(in.size(), 3u);
  EXPECT_EQ(in[0].name, "wiki");
  EXPECT_EQ(in[0].path, "data/wiki/");
  EXPECT_EQ(in[1].name, "books");
  EXPECT_EQ(in[1].path, "/raw/bookcorpus/txt");
  EXPECT_EQ(in[2].name, "pg19");
  EXPECT_EQ(in[2].format, InputFormat::kAuto);
  const auto two = parse_prep_inputs({"a", "b"}, {"wikiextractor", "txt"});
  EXPECT_EQ(two[0].format, InputFormat::kWikiExtractor);
  EXPECT_EQ(two[1].format, InputFormat::kTxt);
  EXPECT_EQ(parse_prep_inputs({"a", "b"}, {"txt"})[1].format, InputFormat::kTxt);
  expect_input_error([] { parse_prep_inputs({"a", "b", "c"}, {"txt", "txt"}); }, {"2 --format values for 3 --input"});
  expect_input_error(
      [] {
        parse_prep_inputs({"a/train", "b/train"}, {});
      },
      {"--input 'b/train' and --input 'a/train' both write to folder 'train'", "name=path"});
  expect_input_error([] { parse_prep_inputs({"a", "b"}, {"csv"}); }, {"'csv'"});
}

// Two corpora, one tokenizer trained on both: each corpus's shards in <output>/<name>/, one
// tokenizer_sha256, and the blend of the two opens.
TEST(Prep, SeveralInputsShareOneTokenizer) {
  TempDir dir;
  for (int b = 0; b < 3; ++b)
    write_text(dir.file("books/b" + std::to_string(b) + ".txt"), gen_text(static_cast<uint64_t>(b), 500));
  // Wikipedia-like text in letters the books never use, so that a tokenizer trained on the books
  // alone would encode it as <unk>.
  std::string wiki;
  for (int d = 0; d < 12; ++d) {
    std::string t = gen_text(50 + static_cast<uint64_t>(d), 80);
    for (char& ch : t) ch = ch >= 'a' && ch <= 'z' ? static_cast<char>('A' + (ch - 'a')) : ch;
    wiki += "<doc id=\"" + std::to_string(d) + "\" title=\"T\">\n" + t + "</doc>\n";
  }
  write_text(dir.file("wikiext/AA/wiki_00"), wiki);
  PrepOptions o = prep_opts(dir, "books", SampleKind::kLm);
  o.inputs = parse_prep_inputs({dir.file("books"), "wiki=" + dir.file("wikiext")}, {});
  o.valid_fraction = 0.25;
  const PrepSummary sum = run_prep(o, {});
  ASSERT_EQ(sum.corpora.size(), 2u);
  EXPECT_EQ(sum.corpora[1].dir, dir.file("out/wiki"));
  EXPECT_EQ(sum.corpora[0].documents[0] + sum.corpora[0].documents[1], 3);
  EXPECT_EQ(sum.corpora[1].documents[0] + sum.corpora[1].documents[1], 12);
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/train")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/wiki/.prep")));
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(dir.file("out/tokenizer.model")).ok());
  for (const char* name : {"books", "wiki"}) {
    int64_t unk = 0, n = 0;
    for (const auto& doc : lm_documents(dir.file(std::string("out/") + name + "/train")))
      for (int32_t id : doc) unk += id == sp.unk_id(), ++n;
    EXPECT_GT(n, 0);
    EXPECT_EQ(unk, 0) << name << ": the tokenizer did not see this corpus";
  }
  SourceOptions so;
  so.seq_len = 15;
  so.tokenizer_sha256 = sum.tokenizer_sha256;
  auto blend =
      open_blend(parse_blend("0.5 " + dir.file("out/books/train") + " 0.5 " + dir.file("out/wiki/train"), "k"), so);
  EXPECT_EQ(blend->num_corpora(), 2);

  // The two-run recipe: a later corpus prepared with --tokenizer (here as MLM) blends too.
  write_text(dir.file("more/m.txt"), gen_text(99, 400));
  PrepOptions m = prep_opts(dir, "more", SampleKind::kMlm);
  m.output = dir.file("out-more");
  m.tokenizer = dir.file("out/tokenizer.model");
  m.valid_fraction = 0;
  EXPECT_EQ(run_prep(m, {}).tokenizer_sha256, sum.tokenizer_sha256);
  EXPECT_EQ(Hdf5Source(list_shards(dir.file("out-more/train")),
                       [] {
                         SourceOptions x;
                         x.kind = SampleKind::kMlm;
                         return x;
                       }())
                .tokenizer_sha256(),
            sum.tokenizer_sha256);
}

}  // namespace
}  // namespace cst::dataio
