// Writes TensorBoard event files (TFRecord framing: length, masked CRC-32C, Event protobuf,
// masked CRC-32C) with scalar summaries, readable by `tensorboard --logdir`.
// Owns its file; not thread-safe; one writer per file.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace cst::trainer {

class TensorBoardWriter {
 public:
  // Creates <dir>/events.out.tfevents.<unix time>.<host> and writes the file_version event.
  explicit TensorBoardWriter(const std::string& dir);
  void add_scalar(const std::string& tag, double value, int64_t step);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::ofstream out_;
};

// CRC-32C as TFRecord masks it: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t n);

}  // namespace cst::trainer
