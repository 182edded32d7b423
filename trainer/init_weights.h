// Fine-tuning from pretrained weights (init.weights, docs/WEIGHTS.md "Fine-tuning").
//
// The source is a weights file (docs/WEIGHTS.md) or a checkpoint step folder (its model.h5) of a
// bidirectional run: task mlm or cls. A causal LM is refused (exit 2).
//
// Shape. adopt_init_config (torch-free) makes cfg.model the source's model except for what a
// fine-tune may change: task, num_classes, dropout, init_std, and max_seq_len (<= the source's;
// the source's when not set). Any other model.<field> that the config file or command line set
// to another value than the source's is refused naming the field.
//
// Tensors. load_init_weights copies the encoder: tok_emb, every block, ln_f, pos_local, and the
// first rows of pos_global (max_seq_len / slice_len rows) and abs_pos (max_seq_len rows); the
// head of the new task keeps its fresh initialisation (cls_head, mlm_head), and the source's
// other tensors (its head) are left out. A tensor of another shape is refused naming it.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "trainer/train_config.h"

namespace cst::model {
class CstModelImpl;
}

namespace cst::trainer {

// The weights file of init.weights `path`: the file itself, or <path>/model.h5 for a folder.
// InputError naming the path when neither exists.
std::string init_weights_file(const std::string& path);

// See above. explicit_keys: the options set by the config file or the command line
// (launcher::parse_train_options). Reads the file's header only; InputError naming file and field.
void adopt_init_config(TrainConfig& cfg, const std::set<std::string>& explicit_keys);

// What load_init_weights did, by state-dict name.
struct InitReport {
  std::vector<std::string> loaded;    // copied from the source (pos_global / abs_pos: their first rows)
  std::vector<std::string> fresh;     // parameters of the model the source lacks (the new head)
  std::vector<std::string> left_out;  // tensors of the source the model does not use
  std::string text() const;           // one paragraph naming all three lists
};

// Copies the encoder tensors of `path` (init_weights_file) into `model`, whose config must be
// adopt_init_config's. Checks every tensor before changing any. Not collective: every rank reads
// the same file, so every rank holds the same values.
InitReport load_init_weights(model::CstModelImpl& model, const std::string& path);

}  // namespace cst::trainer
