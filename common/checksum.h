// Checksums of files, as lower-case hex: SHA-256 (OpenSSL), for formats that specify it (the
// tokenizer hash of dataio shards, version-1 checkpoint manifests).
#pragma once

#include <string>

namespace cst {

// Lower-case hex SHA-256 of a file's bytes, read in blocks (memory does not grow with the file).
// Throws cst::InputError naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace cst
