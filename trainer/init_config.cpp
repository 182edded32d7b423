// init.weights: the model shape taken from the source weights file (torch-free part).
#include <filesystem>

#include "common/error.h"
#include "model/weights_file.h"
#include "trainer/init_weights.h"

namespace cst::trainer {

std::string init_weights_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    const std::string file = path + "/model.h5";
    CST_INPUT_CHECK(std::filesystem::is_regular_file(file, ec),
                    "init.weights = " << path << ": a folder without model.h5 (expected a weights file or a "
                                      << "checkpoint step_<N> folder)");
    return file;
  }
  CST_INPUT_CHECK(std::filesystem::is_regular_file(path, ec), "init.weights = " << path << ": no such file or folder");
  return path;
}

void adopt_init_config(TrainConfig& cfg, const std::set<std::string>& explicit_keys) {
  if (cfg.init.weights.empty()) return;
  const std::string file = init_weights_file(cfg.init.weights);
  const model::ModelConfig src = model::read_weights_config(file);
  CST_INPUT_CHECK(src.task != model::Task::kLm,
                  "init.weights = " << cfg.init.weights << ": the weights of a causal LM (model.task = lm) cannot "
                                    << "start a bidirectional model; give an mlm or cls run's weights");
  static const std::set<std::string> kMayDiffer = {"task", "num_classes", "dropout", "init_std", "max_seq_len"};
  model::ModelConfig m = cfg.model;
  for (const auto& f : model::ModelConfig::fields()) {
    const bool set = explicit_keys.count("model." + f.name) > 0;
    if (kMayDiffer.count(f.name)) {
      if (f.name == "max_seq_len" && !set) m.max_seq_len = src.max_seq_len;
      continue;
    }
    CST_INPUT_CHECK(!set || f.get(cfg.model) == f.get(src),
                    "model." << f.name << " = " << f.get(cfg.model) << " but init.weights '" << file << "' has "
                             << f.name << " = " << f.get(src)
                             << ": a fine-tune takes the model shape from its weights (drop the option)");
    f.set(m, f.get(src));
  }
  CST_INPUT_CHECK(m.max_seq_len <= src.max_seq_len, "model.max_seq_len = " << m.max_seq_len << " exceeds the "
                                                                           << src.max_seq_len << " of init.weights '"
                                                                           << file << "' (positions it never learnt)");
  cfg.model = m;
}

}  // namespace cst::trainer
