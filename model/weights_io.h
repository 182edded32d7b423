// Model weights as one HDF5 file (docs/WEIGHTS.md): one dataset per parameter, named by its
// state-dict name, at the root; root attributes format = "cst-train.weights", format_version,
// config.<field> for every ModelConfig field, config_hash, and tokenizer_sha256 when known.
#pragma once

#include <string>

#include "model/config.h"
#include "model/model.h"
#include "model/weights_file.h"  // read_weights_config, weight_shapes, kWeightsFormat

namespace cst::model {

// Writes every parameter (float32, or float64 for a double model; bf16/fp16 saved as float32)
// to `path` atomically: written to a temporary file beside it (common/output_guard.h
// StagedFile), flushed, then renamed over `path`. tokenizer_sha256: the hex SHA-256 of the
// SentencePiece .model the model was trained with (the shards' tokenizer_sha256), written as the
// root attribute of that name; "" = unknown (no attribute).
void save_weights(CstModelImpl& model, const std::string& path, const std::string& tokenizer_sha256 = "");

// Copies the file's tensors into model's parameters (converted to each parameter's dtype), after
// read_weights_config's checks. Throws InputError naming tensor, file and both shapes on a
// missing, extra or mis-shaped tensor; the model is left unchanged on error.
void load_weights(CstModelImpl& model, const std::string& path);

// Builds a model from the file's config and loads its weights; the file is checked in full
// (read_weights_config) before the model is allocated.
CstModel load_model(const std::string& path);

}  // namespace cst::model
