#include "model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>

#include "common/error.h"
#include "common/json.h"

namespace cst::model {

namespace {

// Tensors in the order of their bytes: by name, as nlohmann::json orders the header's keys.
std::vector<const SafetensorsTensor*> by_name(const std::vector<SafetensorsTensor>& tensors) {
  std::vector<const SafetensorsTensor*> out;
  for (const auto& t : tensors) out.push_back(&t);
  std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
  return out;
}

bool little_endian_host() {
  const uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

}  // namespace

size_t safetensors_element_size(const std::string& dtype) {
  static const std::map<std::string, size_t> kSizes = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
                                                       {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};
  auto it = kSizes.find(dtype);
  CST_CHECK(it != kSizes.end(), "safetensors: unknown dtype '" << dtype << "'");
  return it->second;
}

std::string safetensors_header(const std::vector<SafetensorsTensor>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  uint64_t offset = 0;
  const auto sorted = by_name(tensors);
  for (size_t i = 0; i < sorted.size(); ++i) {
    const SafetensorsTensor& t = *sorted[i];
    CST_CHECK(!t.name.empty() && t.name != "__metadata__", "safetensors: tensor name '" << t.name << "' is reserved");
    CST_CHECK(i == 0 || sorted[i - 1]->name != t.name, "safetensors: tensor '" << t.name << "' given twice");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      CST_CHECK(d >= 0, "safetensors: tensor '" << t.name << "' has a negative dimension " << d);
      numel *= static_cast<uint64_t>(d);
    }
    CST_CHECK(
        numel * safetensors_element_size(t.dtype) == t.bytes && (t.bytes == 0 || t.data != nullptr),
        "safetensors: tensor '" << t.name << "' holds " << t.bytes << " bytes, not " << numel << " x " << t.dtype);
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  CST_CHECK(little_endian_host(), "safetensors: writing on a big-endian host is not supported");
  const std::string header = safetensors_header(tensors, metadata);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  CST_CHECK(f, "cannot create '" << path << "'");
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(static_cast<uint64_t>(header.size()) >> (8 * i));
  f.write(reinterpret_cast<const char*>(len), 8);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const SafetensorsTensor* t : by_name(tensors))
    f.write(static_cast<const char*>(t->data), static_cast<std::streamsize>(t->bytes));
  f.flush();
  CST_CHECK(f, "cannot write '" << path << "'");
}

}  // namespace cst::model
