// common/checksum.h against digests printed by independent tools (sha256sum, xxhsum -H2), on
// inputs shorter and longer than one read block; common/files.h's bounded read.
#include "common/checksum.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.h"
#include "common/files.h"

namespace cst {
namespace {

std::string temp_file(const std::string& name, const std::string& bytes) {
  const std::string path = (std::filesystem::temp_directory_path() / ("cst_checksum_test_" + name)).string();
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

TEST(Checksum, MatchesSha256sumAndXxhsum) {
  const std::string fox = temp_file("fox", "The quick brown fox jumps over the lazy dog"),
                    empty = temp_file("empty", "");
  EXPECT_EQ(file_checksum(fox, ChecksumKind::kSha256),
            "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592");
  EXPECT_EQ(sha256_file(fox), file_checksum(fox, ChecksumKind::kSha256));
  EXPECT_EQ(file_checksum(fox, ChecksumKind::kXxh3_128), "ddd650205ca3e7fa24a1cc2e3a8a7651");
  EXPECT_EQ(file_checksum(empty, ChecksumKind::kXxh3_128), "99aa06d3014798d86001c324468d497f");
  // 9 MiB + 3 bytes: more than two read blocks, the last one partial.
  std::string pattern(9 * 1024 * 1024 + 3, '\0');
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<char>((i * 131 + 7) & 0xff);
  const std::string big = temp_file("big", pattern);
  EXPECT_EQ(file_checksum(big, ChecksumKind::kSha256),
            "e507ab971999ee8ff19e6aac541b83614805938b301a89dfb0cdad96a2f3d449");
  EXPECT_EQ(file_checksum(big, ChecksumKind::kXxh3_128), "72f22d741c4c1341a234d9651e7166b8");
  for (const auto& p : {fox, empty, big}) std::remove(p.c_str());
}

TEST(Checksum, NamesRoundTripAndAMissingFileIsAnInputError) {
  for (ChecksumKind k : {ChecksumKind::kSha256, ChecksumKind::kXxh3_128})
    EXPECT_EQ(checksum_from_name(checksum_name(k)), k);
  EXPECT_FALSE(checksum_from_name("md5").has_value());
  EXPECT_THROW(file_checksum("/nonexistent/cst_file", ChecksumKind::kXxh3_128), InputError);
}

TEST(Files, ReadFileIsBoundedAndAtomicWriteReplaces) {
  const std::string path = temp_file("text", "0123456789");
  EXPECT_EQ(read_file(path, 10), "0123456789");
  try {
    read_file(path, 9);
    ADD_FAILURE() << "no error for a file over the bound";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("holds 10 bytes"), std::string::npos) << e.what();
  }
  write_file_atomic(path, "new");
  EXPECT_EQ(read_file(path, 10), "new");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_THROW(read_file(path + ".missing", 10), InputError);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace cst
