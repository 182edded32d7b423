#include "common/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "common/error.h"

namespace cst {
namespace {

void fsync_path(const std::string& path, bool dir) {
  const int fd = ::open(path.c_str(), O_RDONLY | (dir ? O_DIRECTORY : 0));
  CST_CHECK(fd >= 0, "cannot open '" << path << "' to fsync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  CST_CHECK(rc == 0, "fsync of '" << path << "' failed");
}

}  // namespace

void fsync_file(const std::string& path) { fsync_path(path, false); }
void fsync_dir(const std::string& path) { fsync_path(path, true); }

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.close();
    CST_CHECK(f.good(), "cannot write '" << tmp << "'");
  }
  fsync_file(tmp);
  CST_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '" << tmp << "' to '" << path << "'");
}

std::string read_file(const std::string& path, int64_t max_bytes) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  CST_INPUT_CHECK(!ec, "cannot read file '" << path << "': " << ec.message());
  CST_INPUT_CHECK(size <= static_cast<uintmax_t>(max_bytes),
                  "file '" << path << "' holds " << size << " bytes, more than the " << max_bytes << " expected");
  std::ifstream f(path, std::ios::binary);
  std::string out(static_cast<size_t>(size), '\0');
  f.read(out.data(), static_cast<std::streamsize>(size));
  CST_INPUT_CHECK(f.gcount() == static_cast<std::streamsize>(size), "cannot read file '" << path << "'");
  return out;
}

}  // namespace cst
