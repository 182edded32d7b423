// Helpers of the tool tests: run a tool binary and look at what it printed and left behind.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace cst::testing {

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs `<bin> <args>`, stdout and stderr into files of `scratch`; returns {exit code, stderr}.
inline std::pair<int, std::string> run_tool(const std::string& bin, const std::string& args,
                                            const std::filesystem::path& scratch) {
  const std::string out = (scratch / "tool-stdout.txt").string(), err = (scratch / "tool-stderr.txt").string();
  const int rc = std::system((bin + " " + args + " > " + out + " 2> " + err).c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, read_text(err)};
}

inline void expect_words(const std::string& text, const std::vector<std::string>& words) {
  for (const std::string& w : words) EXPECT_NE(text.find(w), std::string::npos) << "'" << w << "' not in: " << text;
}

// Every file below `dir` (relative path -> size and hash of its bytes): equal before and after
// = nothing touched.
inline std::map<std::string, std::string> tree(const std::filesystem::path& dir) {
  std::map<std::string, std::string> t;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_directory()) continue;
    const std::string bytes = read_text(e.path().string());
    t[std::filesystem::relative(e.path(), dir).generic_string()] =
        std::to_string(bytes.size()) + " bytes, hash " + std::to_string(std::hash<std::string>{}(bytes));
  }
  return t;
}

}  // namespace cst::testing
