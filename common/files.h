// File operations for writers that must survive a crash (checkpoints) and for readers that must
// survive a damaged file. No torch, no HDF5.
#pragma once

#include <cstdint>
#include <string>

namespace cst {

// fsync(2) of a file or a folder (a folder: makes the renames and removals inside it durable).
// Throw cst::Error naming the path when it cannot be opened or synced.
void fsync_file(const std::string& path);
void fsync_dir(const std::string& path);

// Writes bytes to "<path>.tmp", fsyncs it and renames it over path, so that path holds either
// its old or its new content after a crash. The caller fsyncs the folder to make the rename
// itself durable. Throws cst::Error naming the file on failure.
void write_file_atomic(const std::string& path, const std::string& bytes);

// The whole content of path. Throws cst::InputError naming the file when it cannot be read or
// holds more than max_bytes (checked before anything is allocated).
std::string read_file(const std::string& path, int64_t max_bytes);

}  // namespace cst
