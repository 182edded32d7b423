#include "common/checksum.h"

#include <openssl/evp.h>

#include <fstream>
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
  std::ifstream in(path, std::ios::binary);
  CST_INPUT_CHECK(in.good(), "cannot read file '" << path << "' to hash it");
  std::vector<char> buf(kBlock);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) fn(buf.data(), static_cast<size_t>(in.gcount()));
  }
  CST_INPUT_CHECK(in.eof(), "read error in file '" << path << "' while hashing it");
}

}  // namespace

std::string sha256_file(const std::string& path) {
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

}  // namespace cst
