#include "common/output_folder.h"

#include <algorithm>
#include <filesystem>

#include "common/error.h"
#include "common/files.h"
#include "common/json.h"

namespace cst {
namespace fs = std::filesystem;

namespace {

constexpr char kManifestFormat[] = "cst-output-manifest";
constexpr int64_t kMaxManifestBytes = 64 << 20;

// A manifest entry must name a path inside the folder: relative, normal, no "..".
bool safe_relative(const std::string& rel) {
  const fs::path p(rel);
  if (rel.empty() || p.is_absolute() || p.lexically_normal().generic_string() != rel) return false;
  return std::none_of(p.begin(), p.end(), [](const fs::path& c) { return c == ".." || c == "."; });
}

bool matches(const std::string& rel, const std::string& pattern) {
  const size_t star = pattern.find("/*");
  if (star == std::string::npos) return rel == pattern;
  const std::string prefix = pattern.substr(0, star + 1), suffix = pattern.substr(star + 2);
  return rel.size() >= prefix.size() + suffix.size() && rel.compare(0, prefix.size(), prefix) == 0 &&
         rel.find('/', prefix.size()) == std::string::npos &&
         rel.compare(rel.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::string OutputFolder::staging_path(const std::string& dir, const std::string& tool) {
  return (fs::path(dir) / ("." + tool + "-staging")).string();
}

OutputFolder::OutputFolder(const NamedPath& dir, std::string tool, bool overwrite,
                           const std::vector<std::string>& reserved)
    : dir_(dir.path), tool_(std::move(tool)), option_(dir.option) {
  check_folder_usable(dir);
  const std::string where = option_ + " '" + dir_ + "'";
  std::error_code ec;
  if (!fs::exists(dir_, ec)) {
    fs::create_directories(dir_, ec);
    CST_INPUT_CHECK(!ec, where << ": cannot create the folder: " << ec.message());
    created_dir_ = true;
  }
  const fs::path manifest = fs::path(dir_) / manifest_name(tool_);
  had_manifest_ = fs::exists(manifest, ec);
  if (had_manifest_) {
    const std::string what = "manifest '" + manifest.string() + "'";
    try {
      const Json m = parse_json(read_file(manifest.string(), kMaxManifestBytes), what, 4);
      CST_INPUT_CHECK(json_string(m, "format", what) == kManifestFormat && json_string(m, "tool", what) == tool_,
                      what << ": not a manifest of " << tool_);
      const Json& files = json_member(m, "files", what);
      CST_INPUT_CHECK(files.is_array(), what << ": field 'files' is not an array");
      for (const Json& f : files) {
        CST_INPUT_CHECK(f.is_string() && safe_relative(f.get<std::string>()),
                        what << ": entry " << f.dump() << " is not a path inside the folder");
        old_.insert(f.get<std::string>());
      }
      const Json& complete = json_member(m, "complete", what);
      CST_INPUT_CHECK(complete.is_boolean(), what << ": field 'complete' is not true or false");
      old_complete_ = complete.get<bool>();
    } catch (const InputError& e) {
      CST_THROW_INPUT(where << ": " << e.what() << "; cannot tell the files " << tool_
                            << " wrote from others: clean the folder by hand or choose another");
    }
  }
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(dir_)) entries.push_back(e.path().filename().string());
  std::sort(entries.begin(), entries.end());
  if (!entries.empty() && !overwrite) {
    std::string some;
    for (size_t i = 0; i < entries.size() && i < 4; ++i) some += (i ? ", " : "") + entries[i];
    CST_THROW_INPUT(where << " is not empty (" << entries.size() << " entries: " << some
                          << (entries.size() > 4 ? ", ..." : "") << ")"
                          << (had_manifest_ && !old_complete_ ? "; an earlier " + tool_ + " run did not finish" : "")
                          << ": pass --overwrite to replace the files " << tool_ << " wrote there before "
                          << "(other files are kept), or choose an empty folder");
  }
  // Foreign files where the tool writes, and a foreign staging folder, are refused now.
  std::vector<std::string> patterns = reserved;
  patterns.push_back(fs::path(staging()).filename().string());
  for (auto it = fs::recursive_directory_iterator(dir_); it != fs::recursive_directory_iterator(); ++it) {
    const std::string rel = fs::relative(it->path(), dir_).generic_string();
    if (rel == manifest_name(tool_) || old_.count(rel)) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    for (const std::string& p : patterns)
      CST_INPUT_CHECK(!matches(rel, p), where << ": '" << rel << "' was not written by " << tool_ << " (not in "
                                              << manifest_name(tool_) << ") and has a name " << tool_
                                              << " writes: not replaced, even with --overwrite; move it away or "
                                              << "choose another folder");
  }
  std::set<std::string> journal = old_;
  journal.insert(fs::path(staging()).filename().string());
  write_manifest(journal, false);
  fs::remove_all(staging(), ec);
  fs::create_directories(staging(), ec);
  CST_INPUT_CHECK(!ec, where << ": cannot create '" << staging() << "': " << ec.message());
}

OutputFolder::~OutputFolder() {
  if (committed_) return;
  try {
    std::error_code ec;
    fs::remove_all(staging(), ec);
    if (had_manifest_) {
      write_manifest(old_, old_complete_);
    } else {
      fs::remove(fs::path(dir_) / manifest_name(tool_), ec);
      if (created_dir_) fs::remove(dir_, ec);  // only when empty
    }
  } catch (...) {
  }
}

void OutputFolder::write_manifest(const std::set<std::string>& files, bool complete) const {
  Json m = {
      {"format", kManifestFormat}, {"version", 1}, {"tool", tool_}, {"complete", complete}, {"files", Json::array()}};
  for (const std::string& f : files) m["files"].push_back(f);
  try {
    write_file_atomic((fs::path(dir_) / manifest_name(tool_)).string(), m.dump(1) + "\n");
    fsync_dir(dir_);
  } catch (const Error& e) {
    CST_THROW_INPUT(option_ << " '" << dir_ << "': " << e.what());
  }
}

void OutputFolder::remove_owned(const std::string& rel) const {
  std::error_code ec;
  const fs::path p = fs::path(dir_) / rel;
  if (fs::is_directory(fs::symlink_status(p, ec)))
    fs::remove_all(p, ec);
  else
    fs::remove(p, ec);  // a symlink itself, never its target
  CST_INPUT_CHECK(!ec, option_ << " '" << dir_ << "': cannot remove '" << p.string() << "': " << ec.message());
  // Folders that held it and are now empty (never the output folder itself).
  for (fs::path d = fs::path(rel).parent_path(); !d.empty(); d = d.parent_path())
    if (!fs::remove(fs::path(dir_) / d, ec)) break;
}

void OutputFolder::commit(const std::vector<std::string>& files) {
  const std::string where = option_ + " '" + dir_ + "'";
  std::set<std::string> fresh(files.begin(), files.end());
  std::error_code ec;
  for (const std::string& f : fresh) {
    CST_CHECK(safe_relative(f) && fs::exists(fs::path(staging()) / f, ec), "commit: '" << f << "' was not staged");
    CST_INPUT_CHECK(
        old_.count(f) || !fs::exists(fs::symlink_status(fs::path(dir_) / f, ec)),
        where << ": '" << f << "' exists and was not written by " << tool_ << ": not replaced, even with --overwrite");
  }
  std::set<std::string> journal = old_;
  journal.insert(fresh.begin(), fresh.end());
  journal.insert(fs::path(staging()).filename().string());
  write_manifest(journal, false);
  for (const std::string& f : old_)
    if (!fresh.count(f) && f != fs::path(staging()).filename().string()) remove_owned(f);
  for (const std::string& f : fresh) {
    const fs::path to = fs::path(dir_) / f;
    fs::create_directories(to.parent_path(), ec);
    fs::rename(fs::path(staging()) / f, to, ec);
    CST_INPUT_CHECK(!ec, where << ": cannot move '" << f << "' into place: " << ec.message());
  }
  write_manifest(fresh, true);
  fs::remove_all(staging(), ec);
  committed_ = true;
}

}  // namespace cst
