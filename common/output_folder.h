// An output folder a tool owns file by file (README "Safety", docs/DATA.md "Output folder").
//
// <dir>/<tool>.json (the manifest) lists every file the tool wrote there. A run writes its new
// files into the staging folder <dir>/.<tool>-staging/ and commit() moves them into place; so
// a failed or killed run never leaves a half-written file under a final name, and the next run
// with --overwrite knows exactly what to replace. Rules:
//   - a missing folder is created (with its parents); a file there, or a folder that cannot be
//     created or written, is refused;
//   - a non-empty folder is refused unless `overwrite`;
//   - with `overwrite`, the files the manifest lists are replaced (removed, or overwritten by
//     the new ones) and every other entry is left as it is; a foreign file with a name the
//     tool writes (a `reserved` pattern) is refused up front, never replaced;
//   - a damaged manifest, or one naming a path outside the folder, is refused: the tool cannot
//     tell its files from others.
// The manifest is written before anything is removed or moved and lists everything of the tool
// in the folder at each step (complete = false until commit() ends), so a run killed at any
// point leaves a folder the next --overwrite run can clean. Every refusal is an InputError
// naming the option and the path. Single process: other ranks may write into staging() only
// after the constructor returned on the one that made it.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "common/output_guard.h"

namespace cst {

class OutputFolder {
 public:
  // reserved: paths relative to the folder that the tool writes, exact ("tokenizer.model") or
  // "<folder>/*<suffix>" ("train/*.h5").
  OutputFolder(const NamedPath& dir, std::string tool, bool overwrite, const std::vector<std::string>& reserved);
  // Without commit(): removes the staging folder and puts the manifest back as it was (a folder
  // this object created and left empty is removed). Never throws.
  ~OutputFolder();
  OutputFolder(const OutputFolder&) = delete;
  OutputFolder& operator=(const OutputFolder&) = delete;

  const std::string& dir() const { return dir_; }
  // Where new files go, with the relative paths they will have in dir().
  std::string staging() const { return staging_path(dir_, tool_); }
  static std::string staging_path(const std::string& dir, const std::string& tool);
  static std::string manifest_name(const std::string& tool) { return tool + ".json"; }

  // Moves the staged `files` (paths relative to staging()) into dir(), replacing the files of
  // the earlier run, and records them as complete. Throws InputError, before anything of the
  // earlier run is removed, when a destination holds a foreign file.
  void commit(const std::vector<std::string>& files);

 private:
  void write_manifest(const std::set<std::string>& files, bool complete) const;
  void remove_owned(const std::string& rel) const;

  std::string dir_, tool_, option_;
  std::set<std::string> old_;  // files of the earlier run (from its manifest)
  bool old_complete_ = false, had_manifest_ = false, created_dir_ = false, committed_ = false;
};

}  // namespace cst
