// The weights file format (docs/WEIGHTS.md) without torch: its attributes, the tensors a config
// implies, and the checks a file passes before any tensor is allocated. model/weights_io.h
// reads and writes the tensors themselves.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/config.h"

namespace cst::model {

inline constexpr const char* kWeightsFormat = "cst-train.weights";
inline constexpr int64_t kWeightsVersion = 1;
inline constexpr const char* kWeightsConfigPrefix = "config.";
inline constexpr const char* kWeightsTokenizerAttr = "tokenizer_sha256";  // optional root attribute

// Every parameter of a model of this config, by state-dict name, with its shape (the Datasets
// table of docs/WEIGHTS.md). cfg must be valid.
std::map<std::string, std::vector<int64_t>> weight_shapes(const ModelConfig& cfg);

// Reads a weights file's header and checks the file before anything is sized by it: format and
// version, every config.<field> attribute (parsed, then ModelConfig::validate with its upper
// bounds), and every dataset against weight_shapes(config): no tensor missing or extra, each of
// the config's shape, float32 or float64, and backed by the bytes the file stores (a dataset
// declaring more than the file holds is refused). Throws InputError naming the file, the
// attribute or tensor, and the value. Returns the config.
ModelConfig read_weights_config(const std::string& path);

// The file's tokenizer_sha256 root attribute (the SHA-256 of the SentencePiece model it was
// trained with), or "" when the file does not record one (files written before it existed, or
// by a run that did not know it).
std::string read_weights_tokenizer(const std::string& path);

}  // namespace cst::model
