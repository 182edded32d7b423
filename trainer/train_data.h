// TrainData: the data of a run: the training and validation splits (one corpus or a blend
// each), the sequence length the model sees, and the training loader with its position. No
// torch, no collective: a test builds it from shards and a layout alone.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/parallel_layout.h"
#include "dataio/blend.h"
#include "dataio/loader.h"
#include "trainer/train_config.h"
#include "trainer/train_types.h"

namespace cst::trainer {

struct TrainData {
  // Opens data.train and data.valid (when set) for `task` and checks them against the model
  // (vocabulary, model.max_seq_len) and, under sequence parallelism, the layout: every split has
  // the training length and splits into whole slices per rank (ParallelLayout::check_split_len).
  // InputError naming the split, the length, S and L. cfg must outlive the object.
  TrainData(const TrainConfig& cfg, const TaskKind& task, const ParallelLayout& layout);

  std::shared_ptr<dataio::BlendSource> train_src, valid_src;  // valid_src: null without data.valid
  int64_t seq_len = 0;                     // N: tokens per sample fed to the model (the whole sequence, all chunks)
  std::unique_ptr<dataio::Loader> loader;  // the training loader (start_loader)
  dataio::LoaderState loader_state;        // data position after the last step done (or resumed)

  // The loader options of this rank: its data-parallel replica (the S ranks of a sequence read
  // the same samples), seed, prefetch, masking, log.eval_batches.
  dataio::LoaderOptions loader_options(bool train) const;
  // Opens the training loader at loader_state; resumed_from ("" = fresh start) names the
  // checkpoint in the InputError of a position that does not fit data.train.
  void start_loader(const std::string& resumed_from);
  // The tokenizer of the training shards (their tokenizer_sha256), else data.tokenizer_sha256;
  // "" = unknown. Recorded in weight files and checkpoint manifests.
  std::string tokenizer_sha256() const;

 private:
  std::shared_ptr<dataio::BlendSource> open_split(const std::string& key, const std::string& text) const;
  const TrainConfig& cfg_;
  TaskKind task_;
  ParallelLayout layout_;
};

}  // namespace cst::trainer
