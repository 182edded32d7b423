// cst-prep's output safety end to end (README "Safety", docs/DATA.md "Output folder"): the
// output never overlaps an input, a non-empty folder needs --overwrite, --overwrite replaces
// only what cst-prep wrote, a failed or killed run leaves nothing that looks complete, and bad
// output paths exit 2 naming them.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/launcher/tool_util.h"

namespace cst {
namespace {

namespace fs = std::filesystem;
using testing::expect_words;
using testing::read_text;
using testing::tree;

class PrepTool : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cst_prep_tool_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "scratch");
    // A pg19-layout corpus: the raw books a wrong --output would destroy.
    for (const char* f : {"train/1.txt", "train/2.txt", "validation/3.txt"}) write(dir_ / "pg" / f, book(f[0] + 40));
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& n) const { return (dir_ / n).string(); }

  static void write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  static std::string book(int seed, int lines = 200) {
    std::string s;
    for (int i = 0; i < lines; ++i)
      s += "Line " + std::to_string(i * seed % 97) + " of the book tells of the sea and the " +
           (i % 3 ? "ship." : "harbour.") + "\n";
    return s;
  }
  std::pair<int, std::string> run(const std::string& args) {
    return testing::run_tool(CST_PREP_BIN, "-q --vocab-size 64 " + args, dir_ / "scratch");
  }
  fs::path dir_;
};

TEST_F(PrepTool, OutputOverlappingAnInputIsRefusedAndTheInputUntouched) {
  const auto before = tree(p("pg"));
  fs::create_directory_symlink(p("pg"), p("pg-link"));
  write(dir_ / "tok" / "tokenizer.model", "x");
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"--input " + p("pg"), p("pg"), "is --input"},
      {"--input " + p("pg") + " --overwrite", p("pg"), "is --input"},
      {"--input " + p("pg-link"), p("pg/"), "is --input"},
      {"--input " + p("pg"), p("pg/train/out"), "lies inside --input"},
      {"--input " + p("pg/train") + " --format txt", p("pg"), "--input '" + p("pg/train") + "' lies inside --output"},
      {"--input " + p("pg") + " --tokenizer " + p("tok/tokenizer.model"), p("tok"), "lies inside --output"},
  };
  for (const auto& [in, out, why] : cases) {
    auto [rc, err] = run(in + " --output " + out);
    EXPECT_EQ(rc, 2) << in << " -> " << out << ": " << err;
    expect_words(err, {out, why});
  }
  EXPECT_EQ(tree(p("pg")), before);
}

TEST_F(PrepTool, OverwriteReplacesOnlyItsOwnFiles) {
  // First run: small shards, so that the train split has several.
  auto [rc, err] = run("--input " + p("pg") + " --output " + p("out") + " --shard-tokens 200");
  ASSERT_EQ(rc, 0) << err;
  EXPECT_TRUE(fs::exists(p("out/train/shard-00001.h5")));
  const std::string manifest = read_text(p("out/cst-prep.json"));
  expect_words(manifest, {"\"complete\": true", "tokenizer.model", "train/shard-00001.h5"});

  std::tie(rc, err) = run("--input " + p("pg") + " --output " + p("out"));
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {"--output '" + p("out") + "' is not empty", "--overwrite"});
  EXPECT_EQ(read_text(p("out/cst-prep.json")), manifest);

  write(dir_ / "out" / "notes.txt", "mine");
  write(dir_ / "out" / "train" / "README", "also mine");
  const std::string tokenizer = read_text(p("out/tokenizer.model"));
  std::tie(rc, err) = run("--input " + p("pg") + " --output " + p("out") + " --overwrite --model-type char");
  ASSERT_EQ(rc, 0) << err;
  EXPECT_NE(read_text(p("out/tokenizer.model")), tokenizer);
  EXPECT_EQ(read_text(p("out/notes.txt")), "mine");
  EXPECT_EQ(read_text(p("out/train/README")), "also mine");
  EXPECT_TRUE(fs::exists(p("out/train/shard-00000.h5")));
  EXPECT_FALSE(fs::exists(p("out/train/shard-00001.h5")));  // the earlier run's, replaced by one shard
  EXPECT_FALSE(fs::exists(p("out/.cst-prep-staging")));
  const std::string m2 = read_text(p("out/cst-prep.json"));
  EXPECT_EQ(m2.find("shard-00001"), std::string::npos) << m2;
  EXPECT_EQ(m2.find("notes.txt"), std::string::npos) << m2;

  // A foreign file with a name cst-prep writes is never replaced, even with --overwrite.
  write(dir_ / "out" / "validation" / "extra.h5", "someone's shard");
  const auto before = tree(p("out"));
  std::tie(rc, err) = run("--input " + p("pg") + " --output " + p("out") + " --overwrite");
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {"validation/extra.h5", "not written by cst-prep", "even with --overwrite"});
  EXPECT_EQ(tree(p("out")), before);
}

TEST_F(PrepTool, NonEmptyForeignFolderAndDamagedManifest) {
  write(dir_ / "foreign" / "thesis.tex", "years of work");
  auto [rc, err] = run("--input " + p("pg") + " --output " + p("foreign"));
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {"not empty", "thesis.tex"});
  // With --overwrite the foreign file stays: nothing of it is cst-prep's.
  std::tie(rc, err) = run("--input " + p("pg") + " --output " + p("foreign") + " --overwrite");
  ASSERT_EQ(rc, 0) << err;
  EXPECT_EQ(read_text(p("foreign/thesis.tex")), "years of work");
  // A manifest naming a path outside the folder (or not JSON) is refused before anything is removed.
  for (const std::string& bad :
       {std::string(R"({"format": "cst-output-manifest", "version": 1, "tool": "cst-prep", "complete": true,)"
                    R"( "files": ["../pg/train/1.txt"]})"),
        std::string("{\"files\": [[[[[[[[[[")}) {
    write(dir_ / "foreign" / "cst-prep.json", bad);
    const auto before = tree(p("foreign")), pg = tree(p("pg"));
    std::tie(rc, err) = run("--input " + p("pg") + " --output " + p("foreign") + " --overwrite");
    EXPECT_EQ(rc, 2) << err;
    expect_words(err, {p("foreign/cst-prep.json"), "cannot tell the files cst-prep wrote"});
    EXPECT_EQ(tree(p("foreign")), before);
    EXPECT_EQ(tree(p("pg")), pg);
  }
}

TEST_F(PrepTool, FailedOrKilledRunsLeaveNothingThatLooksComplete) {
  // Fails after the tokenizer is trained (a later file of the corpus is malformed JSONL).
  write(dir_ / "js" / "a.jsonl", "{\"text\": \"" + book(3, 40) + "\"}\n");
  std::string a = read_text(p("js/a.jsonl"));
  for (char& c : a)
    if (c == '\n') c = ' ';
  write(dir_ / "js" / "a.jsonl", a + "\n");
  write(dir_ / "js" / "b.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"\\u12G4\"}\n");
  auto [rc, err] = run("--input " + p("js") + " --output " + p("fresh"));
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {"b.jsonl' line 2"});
  EXPECT_FALSE(fs::exists(p("fresh")));  // created by the run, removed by it
  // Over an earlier complete output: that output is left as it was.
  std::tie(rc, err) = run("--input " + p("pg") + " --output " + p("out"));
  ASSERT_EQ(rc, 0) << err;
  const auto before = tree(p("out"));
  std::tie(rc, err) = run("--input " + p("js") + " --output " + p("out") + " --overwrite");
  EXPECT_EQ(rc, 2) << err;
  EXPECT_EQ(tree(p("out")), before);

  // kill -9 while the tokenizer trains: the folder says the run did not finish, and a rerun
  // with --overwrite cleans it and completes.
  for (int i = 0; i < 30; ++i) write(dir_ / "big" / "train" / (std::to_string(i) + ".txt"), book(i + 7, 3000));
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(CST_PREP_BIN, CST_PREP_BIN, "-q", "--vocab-size", "500", "--input", p("big").c_str(), "--output",
            p("killed").c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(p("killed/.cst-prep-staging/tokenizer.model")) &&
         !fs::exists(p("killed/.cst-prep-staging/parts")) &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "cst-prep ended before it could be killed";
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  EXPECT_FALSE(fs::exists(p("killed/tokenizer.model")));
  expect_words(read_text(p("killed/cst-prep.json")), {"\"complete\": false", ".cst-prep-staging"});
  std::tie(rc, err) = run("--input " + p("pg") + " --output " + p("killed"));
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {"did not finish", "--overwrite"});
  std::tie(rc, err) = run("--input " + p("pg") + " --output " + p("killed") + " --overwrite");
  ASSERT_EQ(rc, 0) << err;
  EXPECT_FALSE(fs::exists(p("killed/.cst-prep-staging")));
  expect_words(read_text(p("killed/cst-prep.json")), {"\"complete\": true"});
}

TEST_F(PrepTool, SeveralInputsEachChecked) {
  write(dir_ / "other" / "train" / "9.txt", book(9));
  const auto before = tree(p("other"));
  // The output lies inside the second input.
  auto [rc, err] = run("--input a=" + p("pg") + " --input b=" + p("other") + " --output " + p("other/out"));
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {"lies inside --input '" + p("other") + "'"});
  EXPECT_EQ(tree(p("other")), before);
  std::tie(rc, err) = run("--input a=" + p("pg") + " --input b=" + p("other") + " --output " + p("out"));
  ASSERT_EQ(rc, 0) << err;
  expect_words(read_text(p("out/cst-prep.json")), {"a/train/shard-00000.h5", "b/train/shard-00000.h5"});
  write(dir_ / "out" / "b" / "train" / "mine.h5", "not a shard of cst-prep's");
  std::tie(rc, err) =
      run("--input a=" + p("pg") + " --input b=" + p("other") + " --output " + p("out") + " --overwrite");
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {"b/train/mine.h5", "not written by cst-prep"});
}

TEST_F(PrepTool, BadOutputPathsExitTwoNamingThePath) {
  write(dir_ / "afile", "x");
  std::string ro = "/proc/self/cst-prep-out";  // root may write anywhere, but creates nothing in /proc
  if (::geteuid() != 0) {
    fs::create_directories(p("ro"));
    fs::permissions(p("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    ro = p("ro/out");
  }
  for (const auto& [out, why] :
       std::vector<std::pair<std::string, std::string>>{{p("afile"), "is a file, a folder is needed"},
                                                        {p("afile/sub"), "is a file, a folder is needed"},
                                                        {ro, "not writable"}}) {
    auto [rc, err] = run("--input " + p("pg") + " --output " + out);
    EXPECT_EQ(rc, 2) << err;
    expect_words(err, {"--output '" + out + "'", why});
  }
  EXPECT_EQ(read_text(p("afile")), "x");
}

// Text that is not UTF-8 (and binary files) are errors naming the file and byte offset, for
// every format; --encoding latin-1 converts ISO-8859-1 instead.
TEST_F(PrepTool, NonUtf8InputIsAnErrorOrConvertedWithLatin1) {
  write(dir_ / "pg" / "train" / "4.txt", book(7) + "The caf\xe9 by the sea.\n");
  auto [rc, err] = run("--input " + p("pg") + " --output " + p("out"));
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {p("pg/train/4.txt"), "not UTF-8 text at byte offset " + std::to_string(book(7).size() + 7)});
  EXPECT_FALSE(fs::exists(p("out")));
  std::tie(rc, err) = run("--input " + p("pg") + " --output " + p("out") + " --encoding latin-1");
  EXPECT_EQ(rc, 0) << err;
  write(dir_ / "bin" / "a.txt", std::string("\x7f"
                                            "ELF\x02\x01\x01\0\0\0",
                                            10));
  std::tie(rc, err) = run("--input " + p("bin") + " --output " + p("out-bin") + " --encoding latin-1");
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {p("bin/a.txt"), "byte offset 7", "NUL"});
}

// A --tokenizer that does not load is named as given (not as its copy in the staging folder).
TEST_F(PrepTool, TokenizerThatDoesNotLoadIsNamedAsGiven) {
  write(dir_ / "tok" / "bad.model", "not a sentencepiece model");
  for (const char* task : {"lm", "mlm"}) {
    auto [rc, err] =
        run("--input " + p("pg") + " --output " + p("out") + " --task " + task + " --tokenizer " + p("tok/bad.model"));
    EXPECT_EQ(rc, 2) << err;
    expect_words(err, {"cannot load tokenizer '" + p("tok/bad.model") + "'"});
    EXPECT_EQ(err.find("staging"), std::string::npos) << err;
    EXPECT_FALSE(fs::exists(p("out")));
  }
}

// --task cls end to end: a ListOps folder with the built-in vocabulary, the per-split counts
// printed (examples, truncated, skipped), a bad row exiting 2 naming file, line and column, and
// the output safety of the other tasks.
TEST_F(PrepTool, ClsTaskPrintsCountsAndNamesBadRows) {
  write(dir_ / "lo" / "basic_train.tsv", "Source\tTarget\n( ( [MAX 2 ) 9 ) ] )\t9\n[SM 1 2 3 4 5 6 7 8 9 ]\t5\n");
  write(dir_ / "lo" / "basic_val.tsv", "Source\tTarget\n[MIN 4 [MED 1 2 3 ] ]\t2\n[MAX 1 ]\tx\n");
  auto [rc, err] = run("--task cls --format lra-listops --input " + p("lo") + " --output " + p("out") +
                       " --seq-len 8 --skip-bad-rows");
  ASSERT_EQ(rc, 0) << err;
  const std::string out = read_text(p("scratch/tool-stdout.txt"));
  expect_words(out, {"lra/listops", "listops-vocab.txt (vocab 19", "train", "2 examples, 1 truncated to 8 tokens",
                     "validation", "1 examples, 1 truncated to 8 tokens, 1 bad rows skipped"});
  expect_words(err, {"skipped a bad row", p("lo/basic_val.tsv") + "' line 3 column 2 ('Target')"});
  expect_words(read_text(p("out/cst-prep.json")), {"\"complete\": true", "listops-vocab.txt", "train/shard-00000.h5"});
  std::tie(rc, err) = run("--task cls --format lra-listops --input " + p("lo") + " --output " + p("out2"));
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {p("lo/basic_val.tsv") + "' line 3 column 2 ('Target')", "'x'"});
  EXPECT_FALSE(fs::exists(p("out2")));
  std::tie(rc, err) = run("--task cls --format lra-listops --input " + p("lo") + " --output " + p("lo/out"));
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {"lies inside --input"});
  std::tie(rc, err) = run("--task cls --format txt --input " + p("lo") + " --output " + p("out3"));
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {"'txt'", "lra-listops"});
}

}  // namespace
}  // namespace cst
