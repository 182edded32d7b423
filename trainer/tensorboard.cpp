#include "trainer/tensorboard.h"

#include <unistd.h>

#include <boost/crc.hpp>
#include <chrono>
#include <cstring>

#include "common/error.h"
#include "trainer/event.pb.h"

namespace cst::trainer {
namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

uint32_t masked_crc32c(const void* data, size_t n) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;  // CRC-32C (Castagnoli)
  crc.process_bytes(data, n);
  const uint32_t c = crc.checksum();
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  path_ = dir + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(now_seconds())) + "." + host;
  out_.open(path_, std::ios::binary | std::ios::trunc);
  CST_INPUT_CHECK(out_.good(), "cannot create TensorBoard event file '" << path_ << "'");
  tensorboard::Event ev;
  ev.set_wall_time(now_seconds());
  ev.set_file_version("brain.Event:2");
  write_record(ev.SerializeAsString());
  flush();
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  tensorboard::Event ev;
  ev.set_wall_time(now_seconds());
  ev.set_step(step);
  auto* v = ev.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
  write_record(ev.SerializeAsString());
}

void TensorBoardWriter::write_record(const std::string& data) {
  const uint64_t len = data.size();
  char header[8];
  std::memcpy(header, &len, 8);  // little endian on every platform we build for
  const uint32_t len_crc = masked_crc32c(header, 8), data_crc = masked_crc32c(data.data(), data.size());
  out_.write(header, 8);
  out_.write(reinterpret_cast<const char*>(&len_crc), 4);
  out_.write(data.data(), static_cast<std::streamsize>(data.size()));
  out_.write(reinterpret_cast<const char*>(&data_crc), 4);
  CST_INPUT_CHECK(out_.good(), "write to TensorBoard event file '" << path_ << "' failed");
}

void TensorBoardWriter::flush() { out_.flush(); }

}  // namespace cst::trainer
