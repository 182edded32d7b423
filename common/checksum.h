// Checksums of files, as lower-case hex. XXH3-128 (xxHash) guards checkpoints against accidental
// damage (a flipped bit, a truncated or mixed-up file; a 2^-128 chance of a miss) at several
// times the speed of SHA-256 (docs/BENCHMARKS.md); it is no defence against deliberate forgery.
// SHA-256 (OpenSSL) for formats that specify it: the tokenizer hash of dataio shards,
// version-1 checkpoints.
#pragma once

#include <optional>
#include <string>

namespace cst {

enum class ChecksumKind { kSha256, kXxh3_128 };

// The name files use for it: "sha256", "xxh3_128".
const char* checksum_name(ChecksumKind kind);
// The kind of that name; nullopt for any other text.
std::optional<ChecksumKind> checksum_from_name(const std::string& name);
// Hex digits of a digest: 64 for sha256, 32 for xxh3_128.
size_t checksum_hex_size(ChecksumKind kind);

// Lower-case hex digest of a file's bytes (XXH3-128: the canonical big-endian form, as
// `xxh128sum` prints it), read in blocks: memory does not grow with the file. Throws
// cst::InputError naming the file when it cannot be read.
std::string file_checksum(const std::string& path, ChecksumKind kind);
inline std::string sha256_file(const std::string& path) { return file_checksum(path, ChecksumKind::kSha256); }

}  // namespace cst
