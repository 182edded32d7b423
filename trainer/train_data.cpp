#include "trainer/train_data.h"

#include "common/error.h"

namespace cst::trainer {

TrainData::TrainData(const TrainConfig& cfg, const TaskKind& task, const ParallelLayout& layout)
    : cfg_(cfg), task_(task), layout_(layout) {
  train_src = open_split("data.train", cfg.data.train);
  if (!cfg.data.valid.empty()) valid_src = open_split("data.valid", cfg.data.valid);
  seq_len = task.mlm || task.cls ? train_src->sample_len() : cfg.data.seq_len;
  CST_INPUT_CHECK(seq_len <= cfg.model.max_seq_len, "data: samples of "
                                                        << seq_len << " tokens in '" << cfg.data.train
                                                        << "' exceed model.max_seq_len = " << cfg.model.max_seq_len);
  const int64_t extra = task.mlm || task.cls ? 0 : 1;  // LM samples are windows of N + 1 tokens
  layout.check_split_len("data.train = '" + cfg.data.train + "'", train_src->sample_len() - extra, seq_len);
  if (valid_src)
    layout.check_split_len("data.valid = '" + cfg.data.valid + "'", valid_src->sample_len() - extra, seq_len);
}

std::shared_ptr<dataio::BlendSource> TrainData::open_split(const std::string& key, const std::string& text) const {
  dataio::SourceOptions so;
  so.kind = task_.cls ? dataio::SampleKind::kCls : task_.mlm ? dataio::SampleKind::kMlm : dataio::SampleKind::kLm;
  so.num_classes = task_.cls ? cfg_.model.num_classes : 0;
  so.seq_len = cfg_.data.seq_len;
  so.vocab_size = cfg_.model.vocab_size;
  so.tokenizer_sha256 = cfg_.data.tokenizer_sha256;
  return dataio::open_blend(dataio::parse_blend(text, key), so);
}

dataio::LoaderOptions TrainData::loader_options(bool train) const {
  dataio::LoaderOptions lo;
  lo.global_batch = cfg_.train.global_batch;
  lo.place(layout_);  // the S ranks of a sequence read the same samples
  lo.seed = static_cast<uint64_t>(cfg_.train.seed);
  lo.train = train;
  lo.prefetch = static_cast<int>(cfg_.data.prefetch);
  lo.masking.prob = cfg_.data.mask_prob;
  lo.eval_batches = cfg_.log.eval_batches;  // per corpus
  return lo;
}

void TrainData::start_loader(const std::string& resumed_from) {
  try {
    loader = std::make_unique<dataio::Loader>(train_src, loader_options(true), loader_state);
  } catch (const InputError& e) {  // a resumed data position that does not fit this split
    if (resumed_from.empty()) throw;
    throw InputError("checkpoint manifest '" + resumed_from + "/manifest.json', field loader: " + e.what());
  }
}

std::string TrainData::tokenizer_sha256() const {
  const std::string shards = train_src ? train_src->tokenizer_sha256() : "";
  return shards.empty() ? cfg_.data.tokenizer_sha256 : shards;
}

}  // namespace cst::trainer
