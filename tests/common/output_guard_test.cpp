// Output safety helpers: overlap of outputs and inputs (symlinks, hard links, prefixes that are
// not folders), usable folders, existing output files, staged files.
#include "common/output_guard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"

namespace cst {
namespace {

namespace fs = std::filesystem;

class OutputGuard : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cst_output_guard_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "in" / "sub");
    std::ofstream(dir_ / "in" / "a.txt") << "a";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& n) const { return (dir_ / n).string(); }
  bool overlaps(const std::string& out, const std::string& in) {
    try {
      check_no_overlap({"--output", out}, {{"--input", in}});
      return false;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(out), std::string::npos) << e.what();
      return true;
    }
  }
  fs::path dir_;
};

TEST_F(OutputGuard, OverlapThroughSpellingsLinksAndNesting) {
  EXPECT_TRUE(overlaps(p("in"), p("in")));
  EXPECT_TRUE(overlaps(p("in/"), p("in/../in")));
  EXPECT_TRUE(overlaps(p("in/sub/new"), p("in")));  // output inside the input (not existing yet)
  EXPECT_TRUE(overlaps(p("."), p("in/a.txt")));     // input inside the output
  fs::create_directory_symlink(p("in"), p("link"));
  EXPECT_TRUE(overlaps(p("link/sub"), p("in")));
  fs::create_hard_link(p("in/a.txt"), p("hard.txt"));
  EXPECT_TRUE(overlaps(p("hard.txt"), p("in/a.txt")));
  EXPECT_FALSE(overlaps(p("in2"), p("in")));  // a common prefix is not a common folder
  EXPECT_FALSE(overlaps(p("inner/x"), p("in")));
  EXPECT_FALSE(overlaps(p("out"), p("in")));
  check_no_overlap({"--output", p("out")}, {{"--tokenizer", ""}});  // an option not given
}

TEST_F(OutputGuard, OutputFilesAndFolders) {
  auto never = [](const std::string&) { return false; };
  auto always = [](const std::string&) { return true; };
  check_output_file({"--output", p("new.h5")}, false, "tool", never);
  EXPECT_THROW(check_output_file({"--output", p("in/a.txt")}, false, "tool", always), InputError);
  EXPECT_THROW(check_output_file({"--output", p("in/a.txt")}, true, "tool", never), InputError);
  check_output_file({"--output", p("in/a.txt")}, true, "tool", always);
  EXPECT_THROW(check_output_file({"--output", p("in")}, true, "tool", always), InputError);
  EXPECT_THROW(check_output_file({"--output", p("missing/x.h5")}, false, "tool", never), InputError);
  check_folder_usable({"--dir", p("a/b/c")});
  EXPECT_THROW(check_folder_usable({"--dir", p("in/a.txt/c")}), InputError);
}

TEST_F(OutputGuard, StagedFileIsRenamedOnCommitOnly) {
  {
    StagedFile s(p("out.txt"));
    std::ofstream(s.tmp_path()) << "half";
  }
  EXPECT_FALSE(fs::exists(p("out.txt")));
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos);
  StagedFile s(p("out.txt"));
  std::ofstream(s.tmp_path()) << "whole";
  s.commit();
  std::ifstream f(p("out.txt"));
  std::string text;
  f >> text;
  EXPECT_EQ(text, "whole");
}

}  // namespace
}  // namespace cst
