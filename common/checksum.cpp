#include "common/checksum.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "common/error.h"

namespace cst {
namespace {

constexpr size_t kBlock = 4 << 20;

std::string to_hex(const unsigned char* p, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) hex += kHex[p[i] >> 4], hex += kHex[p[i] & 15];
  return hex;
}

// Calls fn(data, n) for consecutive blocks of the file.
template <class F>
void for_each_block(const std::string& path, F&& fn) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  CST_INPUT_CHECK(fd >= 0, "cannot read file '" << path << "' to hash it: " << std::strerror(errno));
  std::unique_ptr<int, void (*)(int*)> closer(new int(fd), [](int* f) {
    ::close(*f);
    delete f;
  });
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::vector<char> buf(kBlock);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    CST_INPUT_CHECK(n >= 0, "read error in file '" << path << "' while hashing it: " << std::strerror(errno));
    if (n == 0) return;
    fn(buf.data(), static_cast<size_t>(n));
  }
}

std::string sha256(const std::string& path) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  CST_CHECK(ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1, "OpenSSL SHA-256 init failed");
  for_each_block(path, [&](const char* p, size_t n) {
    CST_CHECK(EVP_DigestUpdate(ctx.get(), p, n) == 1, "OpenSSL SHA-256 failed for '" << path << "'");
  });
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  CST_CHECK(EVP_DigestFinal_ex(ctx.get(), md, &len) == 1, "OpenSSL SHA-256 failed for '" << path << "'");
  return to_hex(md, len);
}

std::string xxh3_128(const std::string& path) {
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(), &XXH3_freeState);
  CST_CHECK(state && XXH3_128bits_reset(state.get()) == XXH_OK, "XXH3 init failed");
  for_each_block(path, [&](const char* p, size_t n) {
    CST_CHECK(XXH3_128bits_update(state.get(), p, n) == XXH_OK, "XXH3 failed for '" << path << "'");
  });
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(state.get()));
  return to_hex(c.digest, sizeof c.digest);
}

}  // namespace

const char* checksum_name(ChecksumKind kind) { return kind == ChecksumKind::kSha256 ? "sha256" : "xxh3_128"; }

std::optional<ChecksumKind> checksum_from_name(const std::string& name) {
  for (ChecksumKind k : {ChecksumKind::kSha256, ChecksumKind::kXxh3_128})
    if (name == checksum_name(k)) return k;
  return std::nullopt;
}

size_t checksum_hex_size(ChecksumKind kind) { return kind == ChecksumKind::kSha256 ? 64 : 32; }

std::string file_checksum(const std::string& path, ChecksumKind kind) {
  return kind == ChecksumKind::kSha256 ? sha256(path) : xxh3_128(path);
}

}  // namespace cst
