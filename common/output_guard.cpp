#include "common/output_guard.h"

#include <unistd.h>

#include <cstdio>
#include <system_error>

#include "common/error.h"
#include "common/h5.h"

namespace cst {
namespace fs = std::filesystem;

fs::path resolve_path(const std::string& path) {
  CST_INPUT_CHECK(!path.empty(), "empty path");
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  CST_INPUT_CHECK(!ec, "cannot resolve path '" << path << "': " << ec.message());
  return p.lexically_normal();
}

namespace {

// true when `inner` is `outer` or lies below it (both resolved).
bool contains(const fs::path& outer, const fs::path& inner) {
  auto o = outer.begin(), i = inner.begin();
  for (; o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;  // a trailing separator
    if (i == inner.end() || *o != *i) return false;
  }
  return true;
}

// The deepest existing ancestor of p (p itself when it exists).
fs::path existing_part(fs::path p) {
  std::error_code ec;
  while (!p.empty() && !fs::exists(fs::symlink_status(p, ec))) p = p.parent_path();
  return p;
}

}  // namespace

void check_no_overlap(const NamedPath& output, const std::vector<NamedPath>& inputs) {
  const fs::path out = resolve_path(output.path);
  for (const NamedPath& in : inputs) {
    if (in.path.empty()) continue;
    const fs::path src = resolve_path(in.path);
    std::error_code ec;
    const bool same = out == src || fs::equivalent(out, src, ec);  // hard links too
    CST_INPUT_CHECK(!same, output.option << " '" << output.path << "' is " << in.option << " '" << in.path
                                         << "': refusing to write over an input");
    CST_INPUT_CHECK(!contains(src, out), output.option << " '" << output.path << "' lies inside " << in.option << " '"
                                                       << in.path << "': refusing to write into an input");
    CST_INPUT_CHECK(!contains(out, src), in.option << " '" << in.path << "' lies inside " << output.option << " '"
                                                   << output.path << "': refusing to write around an input");
  }
}

void check_folder_usable(const NamedPath& dir) {
  const fs::path p = resolve_path(dir.path);
  const fs::path have = existing_part(p);
  std::error_code ec;
  CST_INPUT_CHECK(!have.empty() && fs::is_directory(have, ec),
                  dir.option << " '" << dir.path << "': '" << have.string() << "' is a file, a folder is needed");
  if (have == p) {
    CST_INPUT_CHECK(::access(p.c_str(), W_OK | X_OK) == 0,
                    dir.option << " '" << dir.path << "': folder is not writable");
  } else {
    CST_INPUT_CHECK(::access(have.c_str(), W_OK | X_OK) == 0,
                    dir.option << " '" << dir.path << "': cannot create it, '" << have.string() << "' is not writable");
  }
}

void check_output_file(const NamedPath& out, bool overwrite, const std::string& tool,
                       const std::function<bool(const std::string&)>& written_by_tool) {
  const fs::path p = resolve_path(out.path);
  const fs::path dir = p.parent_path();
  std::error_code ec;
  CST_INPUT_CHECK(fs::is_directory(dir, ec),
                  out.option << " '" << out.path << "': folder '" << dir.string() << "' does not exist");
  CST_INPUT_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0,
                  out.option << " '" << out.path << "': folder '" << dir.string() << "' is not writable");
  const fs::file_status st = fs::status(p, ec);
  if (!fs::exists(st)) return;
  CST_INPUT_CHECK(!fs::is_directory(st), out.option << " '" << out.path << "' is a folder, a file is needed");
  CST_INPUT_CHECK(overwrite, out.option << " '" << out.path << "' exists: pass --overwrite to replace it, or "
                                        << "choose another path");
  CST_INPUT_CHECK(written_by_tool(p.string()), out.option << " '" << out.path << "' exists and was not written by "
                                                          << tool << ": not replaced, even with --overwrite");
}

StagedFile::StagedFile(std::string path) : path_(std::move(path)) {
  const fs::path p(path_);
  tmp_ = (p.parent_path() / ("." + p.filename().string() + ".tmp-" + std::to_string(::getpid()))).string();
}

StagedFile::~StagedFile() {
  if (committed_) return;
  std::error_code ec;
  fs::remove(tmp_, ec);
}

void StagedFile::commit() {
  CST_INPUT_CHECK(std::rename(tmp_.c_str(), path_.c_str()) == 0,
                  "cannot rename '" << tmp_ << "' to '" << path_ << "': " << std::generic_category().message(errno));
  committed_ = true;
}

bool h5_created_by(const std::string& path, const std::string& tool) {
  try {
    h5::File f(path, h5::File::Mode::kRead);
    return f.has_attr("created_by") && f.attr_string("created_by").rfind(tool, 0) == 0;
  } catch (const InputError&) {
    return false;
  }
}

}  // namespace cst
