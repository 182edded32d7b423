// Output safety shared by every tool that writes (README "Safety"): an output never overlaps an
// input, never replaces a file or folder the tool did not write, and a failed run never leaves
// a truncated output that looks complete. Every refusal is an InputError (exit 2) naming the
// option and the path.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace cst {

// A path given on the command line, with the option that gave it (for messages).
struct NamedPath {
  std::string option;  // "--output"
  std::string path;
};

// The absolute, normal form of `path` with every symlink in its existing part resolved: two
// spellings of one file give the same result, also for a path that does not exist yet.
std::filesystem::path resolve_path(const std::string& path);

// Throws InputError when output and an input are the same file (also through symlinks or hard
// links) or one lies inside the other.
void check_no_overlap(const NamedPath& output, const std::vector<NamedPath>& inputs);

// Throws InputError unless a folder can be at `dir`: it is one, or can be created (every
// existing part of the path is a folder, the deepest existing one writable). Creates nothing.
void check_folder_usable(const NamedPath& dir);

// Throws InputError unless `out` may be written as a file: its folder exists and is writable,
// it is not a folder, and it does not exist, or `overwrite` is set and written_by_tool(path)
// says `tool` wrote it (an existing file written by anything else is never replaced).
void check_output_file(const NamedPath& out, bool overwrite, const std::string& tool,
                       const std::function<bool(const std::string&)>& written_by_tool);

// Whether `path` is an HDF5 file whose root attribute created_by starts with `tool` (what our
// tools record in the files they write): the written_by_tool of check_output_file for them.
// False for anything else, a file that is not HDF5 included.
bool h5_created_by(const std::string& path, const std::string& tool);

// A file written under a temporary name beside its final path ("<dir>/.<name>.tmp-<pid>") and
// renamed over it by commit(), so the final path holds either the old file or the complete new
// one. The temporary file is removed when commit() was not reached. Not copyable.
class StagedFile {
 public:
  explicit StagedFile(std::string path);
  ~StagedFile();
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;
  const std::string& tmp_path() const { return tmp_; }
  const std::string& path() const { return path_; }
  void commit();  // throws InputError naming both paths when the rename fails

 private:
  std::string path_, tmp_;
  bool committed_ = false;
};

}  // namespace cst
