// A writer of the safetensors format (github.com/huggingface/safetensors), torch-free:
//
//   [8 bytes]  N, the header length, unsigned 64-bit little-endian
//   [N bytes]  a JSON object, UTF-8, padded with spaces to a multiple of 8 bytes:
//              {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//               "__metadata__": {"<key>": "<string>", ...}}
//   [rest]     the tensors' bytes, little-endian, C order; offsets are relative to the start of
//              this part, and the tensors lie back to back in name order, without gaps.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cst::model {

// One tensor to write. `data` (not owned) holds numel(shape) elements of `dtype` ("F32", "F64",
// "F16", "BF16", "I64", "I32", "I16", "I8", "U8" or "BOOL") in the host's (little-endian) order.
struct SafetensorsTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;  // [] for a scalar
  const void* data = nullptr;
  size_t bytes = 0;  // numel(shape) * element size of dtype
};

// Bytes per element of a safetensors dtype name; throws cst::Error for an unknown one.
size_t safetensors_element_size(const std::string& dtype);

// The header JSON of these tensors and metadata (string values only, as the format demands),
// padded with spaces to a multiple of 8 bytes. Throws cst::Error on a duplicate or empty name,
// the reserved name "__metadata__", or bytes that do not match the dtype and shape.
std::string safetensors_header(const std::vector<SafetensorsTensor>& tensors,
                               const std::map<std::string, std::string>& metadata);

// Writes the file at `path` (created or truncated; callers stage it, common/output_guard.h).
// Throws cst::Error naming the path when it cannot be written, and as safetensors_header does.
void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata);

}  // namespace cst::model
