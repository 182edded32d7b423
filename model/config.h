// ModelConfig: every hyper-parameter of a CST or baseline model, as a plain struct.
// No torch here: the trainer, data and launcher code include this header cheaply.
//
// Each field is declared once in the field table (config.cpp), which drives the config-file /
// command-line options, the HDF5 attributes of weight files, printing and the config hash.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/fields.h"

namespace cst::model {

enum class Arch { kCst, kFull };      // CSA, or the full-attention baseline
enum class Task { kLm, kMlm, kCls };  // causal LM / masked LM / classifier
enum class Composition {
  kLocalGlobal,
  kGlobalLocal,
  kParallel
};                                                // docs/CST.md "Blocks, heads and the baseline" (ablations)
enum class Aggregation { kMean, kMax, kLinear };  // slice embedding from a slice
enum class PosEmb { kAuto, kMsVipe, kAbsolute };  // auto: MS-VIPE for cst, absolute for full
// How CSA computes its attention (docs/MODEL.md "Kernels"): explicit scores (the reference), or
// fused kernels (SDPA on slice blocks, FlashAttention-2 variable-length on CUDA). auto = fused,
// except attention dropout while training on CPU, where explicit scores are as fast.
enum class CsaKernel { kAuto, kExplicit, kFused };

// Upper bounds of ModelConfig::validate(): far above any model trained today, low enough that no
// product of sizes overflows int64 and that a damaged file cannot ask for an exabyte.
inline constexpr int64_t kMaxVocabSize = 2147483647;  // 2^31 - 1: token ids are int32
inline constexpr int64_t kMaxWidth = 65536;           // d_model
inline constexpr int64_t kMaxFfnWidth = 1048576;      // d_ff
inline constexpr int64_t kMaxLayers = 1024;           // n_layers
inline constexpr int64_t kMaxSeqLen = 16777216;       // max_seq_len: 16M tokens
inline constexpr int64_t kMaxClasses = 1048576;       // num_classes

struct ModelConfig {
  Arch arch = Arch::kCst;        // attention: Composite Slice Attention or full attention
  Task task = Task::kLm;         // head and masking: lm = causal decoder + tied LM head
  int64_t vocab_size = 8000;     // token ids are in [0, vocab_size)
  int64_t d_model = 256;         // D, model width
  int64_t n_heads = 4;           // H; head width d = D / H
  int64_t n_layers = 4;          // number of pre-norm blocks
  int64_t d_ff = 1024;           // F, FFN hidden width
  int64_t max_seq_len = 1024;    // longest N; sizes P_g (max_seq_len / L rows) and abs. positions
  int64_t slice_len = 32;        // L, tokens per slice (CST only)
  double alpha = 2.0;            // slice extension ratio in [1, 3]; e = (alpha - 1) L / 2
  double dropout = 0.1;          // residual / FFN / attention-probability dropout, in [0, 1)
  double layer_norm_eps = 1e-5;  // LayerNorm epsilon
  int64_t num_classes = 2;       // classifier head outputs (task = cls)
  double init_std = 0.02;        // std of the normal init of weights and embeddings
  Composition composition = Composition::kLocalGlobal;  // how local and global attention compose
  Aggregation aggregation = Aggregation::kMean;         // slice pooling
  PosEmb pos_emb = PosEmb::kAuto;                       // MS-VIPE on q/k in every layer, or learned absolute at input

  // ---- how to compute, not what: outside the field table, so not saved in weight files,
  // printed, hashed or compared; results are equal within rounding either way ----
  bool full_sdpa = false;                   // arch = full: at::scaled_dot_product_attention (fused flash /
                                            // memory-efficient kernels on CUDA) instead of explicit N x N scores
  bool activation_checkpointing = false;    // training: keep only each block's input and
                                            // recompute the block in backward (model/activation_checkpoint.h)
  CsaKernel csa_kernel = CsaKernel::kAuto;  // arch = cst: explicit scores or fused kernels

  bool causal() const { return task == Task::kLm; }
  int64_t head_dim() const { return d_model / n_heads; }
  // e, tokens borrowed from each neighbouring slice (left only when causal). validate() first.
  int64_t extension() const;
  // Key window per slice: L + 2e (bidirectional) or L + e (causal). Rows of P_l.
  int64_t window() const;
  int64_t max_slices() const { return max_seq_len / slice_len; }  // rows of P_g
  PosEmb effective_pos_emb() const;                               // resolves kAuto

  // Throws cst::InputError naming the field and value on any out-of-range or inconsistent value
  // (the bounds above included).
  void validate() const;

  // The repository's configs/ folder (set at build time), where the presets are read from.
  static std::string configs_dir();
  // Named presets, each the [model] section of a cst-train config file in configs_dir(), which
  // holds the shape: tiny_lm, tiny_mlm, base_mlm (bert_base_mlm.cfg: BERT-base, N = 128),
  // pg19_longctx (the other sections are ignored). Validated. Throws InputError on another name,
  // naming the file on an unreadable file and the file and key on a bad key or value.
  static ModelConfig preset(const std::string& name);

  // ---- the field table ----
  // name is the option key and, as "config.<name>", the HDF5 attribute of weight files.
  using Field = cst::Field<ModelConfig>;
  static const std::vector<Field>& fields();
  // The how-to-compute options that can be set by name (csa_kernel): never in to_string(), the
  // hash, weight files or checkpoint manifests.
  static const std::vector<Field>& execution_fields();
  void set(const std::string& key, const std::string& value);  // by field or execution-field name
  std::string get(const std::string& key) const;
  std::string to_string() const;  // "key = value" lines, INI style
  uint64_t hash() const;          // FNV-1a of to_string(): equal configs, equal hash
  bool operator==(const ModelConfig& o) const { return to_string() == o.to_string(); }
};

const char* to_string(Arch v);
const char* to_string(Task v);
const char* to_string(Composition v);
const char* to_string(Aggregation v);
const char* to_string(PosEmb v);
const char* to_string(CsaKernel v);

}  // namespace cst::model
