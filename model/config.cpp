#include "model/config.h"

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/parsers.hpp>
#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>

#include "common/error.h"
#include "common/fields.h"

namespace cst::model {
namespace {

const EnumTable<Arch> kArch = {{"cst", Arch::kCst}, {"full", Arch::kFull}};
const EnumTable<Task> kTask = {{"lm", Task::kLm}, {"mlm", Task::kMlm}, {"cls", Task::kCls}};
const EnumTable<Composition> kComp = {{"local-global", Composition::kLocalGlobal},
                                      {"global-local", Composition::kGlobalLocal},
                                      {"parallel", Composition::kParallel}};
const EnumTable<Aggregation> kAgg = {
    {"mean", Aggregation::kMean}, {"max", Aggregation::kMax}, {"linear", Aggregation::kLinear}};
const EnumTable<PosEmb> kPos = {{"auto", PosEmb::kAuto}, {"msvipe", PosEmb::kMsVipe}, {"absolute", PosEmb::kAbsolute}};
const EnumTable<CsaKernel> kCsaKernel = {
    {"auto", CsaKernel::kAuto}, {"explicit", CsaKernel::kExplicit}, {"fused", CsaKernel::kFused}};

// The [model] section of a config file of the repository (INI, as cst-train reads it through
// Boost.Program_options): its keys set on a default ModelConfig, validated.
ModelConfig read_model_section(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  CST_INPUT_CHECK(file.good(), "cannot read config file '" << path << "'");
  namespace po = boost::program_options;
  po::parsed_options parsed(nullptr);
  try {
    parsed = po::parse_config_file<char>(file, po::options_description(), /*allow_unregistered=*/true);
  } catch (const po::error& e) {
    CST_THROW_INPUT("config file '" << path << "': " << e.what());
  }
  const std::string section = "model.";
  ModelConfig c;
  for (const po::option& o : parsed.options) {
    if (o.string_key.compare(0, section.size(), section) != 0) continue;
    const std::string key = o.string_key.substr(section.size());
    try {
      c.set(key, o.value.empty() ? std::string() : o.value.front());
    } catch (const InputError& e) {
      CST_THROW_INPUT("config file '" << path << "' [model] " << key << ": " << e.what());
    }
  }
  try {
    c.validate();
  } catch (const InputError& e) {
    CST_THROW_INPUT("config file '" << path << "': " << e.what());
  }
  return c;
}

}  // namespace

const char* to_string(Arch v) { return enum_name(kArch, v); }
const char* to_string(Task v) { return enum_name(kTask, v); }
const char* to_string(Composition v) { return enum_name(kComp, v); }
const char* to_string(Aggregation v) { return enum_name(kAgg, v); }
const char* to_string(PosEmb v) { return enum_name(kPos, v); }
const char* to_string(CsaKernel v) { return enum_name(kCsaKernel, v); }

const std::vector<ModelConfig::Field>& ModelConfig::fields() {
  static const std::vector<Field> kFields = {
      CST_FIELD_ENUM(ModelConfig, "arch", arch, kArch, "attention: cst (Composite Slice Attention) | full (baseline)"),
      CST_FIELD_ENUM(ModelConfig, "task", task, kTask, "lm (causal decoder, tied LM head) | mlm (encoder) | cls"),
      CST_FIELD_INT(ModelConfig, "vocab_size", vocab_size, "vocabulary size V"),
      CST_FIELD_INT(ModelConfig, "d_model", d_model, "model width D"),
      CST_FIELD_INT(ModelConfig, "n_heads", n_heads, "attention heads H (D % H == 0)"),
      CST_FIELD_INT(ModelConfig, "n_layers", n_layers, "number of blocks"),
      CST_FIELD_INT(ModelConfig, "d_ff", d_ff, "FFN hidden width F"),
      CST_FIELD_INT(ModelConfig, "max_seq_len", max_seq_len, "longest sequence N (multiple of slice_len for cst)"),
      CST_FIELD_INT(ModelConfig, "slice_len", slice_len, "slice length L (cst)"),
      CST_FIELD_FLOAT(ModelConfig, "alpha", alpha, "slice extension ratio in [1, 3]; (alpha-1)*L/2 must be whole"),
      CST_FIELD_FLOAT(ModelConfig, "dropout", dropout, "dropout probability in [0, 1)"),
      CST_FIELD_FLOAT(ModelConfig, "layer_norm_eps", layer_norm_eps, "LayerNorm epsilon"),
      CST_FIELD_INT(ModelConfig, "num_classes", num_classes,
                    "classifier outputs (task = cls); 1 = regression (one output, MSE loss)"),
      CST_FIELD_FLOAT(ModelConfig, "init_std", init_std, "std of the normal weight init"),
      CST_FIELD_ENUM(ModelConfig, "composition", composition, kComp, "local-global (CST) | global-local | parallel"),
      CST_FIELD_ENUM(ModelConfig, "aggregation", aggregation, kAgg, "slice embedding: mean | max | linear"),
      CST_FIELD_ENUM(ModelConfig, "pos_emb", pos_emb, kPos, "auto | msvipe (q/k, every layer) | absolute (input)"),
  };
  return kFields;
}

const std::vector<ModelConfig::Field>& ModelConfig::execution_fields() {
  static const std::vector<Field> kFields = {
      CST_FIELD_ENUM(ModelConfig, "csa_kernel", csa_kernel, kCsaKernel,
                     "CSA kernels: auto | explicit (scores materialised) | fused (SDPA / FlashAttention-2); "
                     "how to compute, not saved with the model"),
  };
  return kFields;
}

void ModelConfig::set(const std::string& key, const std::string& value) {
  for (const auto& f : execution_fields())
    if (f.name == key) return f.set(*this, value);
  find_field(fields(), "model config: unknown key", key, &value).set(*this, value);
}

std::string ModelConfig::get(const std::string& key) const {
  for (const auto& f : execution_fields())
    if (f.name == key) return f.get(*this);
  return find_field(fields(), "model config: unknown key", key).get(*this);
}

std::string ModelConfig::to_string() const {
  std::ostringstream os;
  for (const auto& f : fields()) os << f.name << " = " << f.get(*this) << "\n";
  return os.str();
}

uint64_t ModelConfig::hash() const {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : to_string()) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

PosEmb ModelConfig::effective_pos_emb() const {
  if (pos_emb != PosEmb::kAuto) return pos_emb;
  return arch == Arch::kCst ? PosEmb::kMsVipe : PosEmb::kAbsolute;
}

int64_t ModelConfig::extension() const {
  return static_cast<int64_t>(std::llround((alpha - 1.0) * static_cast<double>(slice_len) / 2.0));
}

int64_t ModelConfig::window() const { return causal() ? slice_len + extension() : slice_len + 2 * extension(); }

void ModelConfig::validate() const {
#define CST_FIELD_CHECK(cond, field, why) \
  CST_INPUT_CHECK(cond, "model config: " << field << " = " << get(field) << ": " << why)
  // Upper bounds: every size here sizes an allocation (a weights file is read through this
  // check before any tensor is made), and their products must not overflow int64.
  CST_FIELD_CHECK(vocab_size >= 2 && vocab_size <= kMaxVocabSize, "vocab_size",
                  "must be in [2, " << kMaxVocabSize << "] (token ids are int32)");
  CST_FIELD_CHECK(d_model >= 1 && d_model <= kMaxWidth, "d_model", "must be in [1, " << kMaxWidth << "]");
  CST_FIELD_CHECK(n_heads >= 1 && n_heads <= d_model, "n_heads", "must be in [1, d_model = " << d_model << "]");
  CST_INPUT_CHECK(d_model % n_heads == 0,
                  "model config: d_model = " << d_model << " is not divisible by n_heads = " << n_heads);
  CST_FIELD_CHECK(n_layers >= 1 && n_layers <= kMaxLayers, "n_layers", "must be in [1, " << kMaxLayers << "]");
  CST_FIELD_CHECK(d_ff >= 1 && d_ff <= kMaxFfnWidth, "d_ff", "must be in [1, " << kMaxFfnWidth << "]");
  CST_FIELD_CHECK(max_seq_len >= 1 && max_seq_len <= kMaxSeqLen, "max_seq_len", "must be in [1, " << kMaxSeqLen << "]");
  CST_FIELD_CHECK(num_classes <= kMaxClasses, "num_classes", "must be <= " << kMaxClasses);
  CST_FIELD_CHECK(dropout >= 0.0 && dropout < 1.0, "dropout", "must be in [0, 1)");
  CST_FIELD_CHECK(layer_norm_eps > 0.0, "layer_norm_eps", "must be > 0");
  CST_FIELD_CHECK(init_std > 0.0, "init_std", "must be > 0");
  if (task == Task::kCls)
    CST_FIELD_CHECK(num_classes >= 1, "num_classes", "must be >= 1 for task = cls (1 = regression, >= 2 = classes)");
  if (arch == Arch::kFull) {
    CST_FIELD_CHECK(pos_emb != PosEmb::kMsVipe, "pos_emb",
                    "MS-VIPE needs slices; the full-attention baseline uses absolute positions");
    return;
  }
  CST_FIELD_CHECK(slice_len >= 1, "slice_len", "must be >= 1");
  CST_INPUT_CHECK(slice_len <= max_seq_len,
                  "model config: slice_len = " << slice_len << " exceeds max_seq_len = " << max_seq_len);
  CST_INPUT_CHECK(max_seq_len % slice_len == 0,
                  "model config: max_seq_len = " << max_seq_len << " is not a multiple of slice_len = " << slice_len);
  CST_FIELD_CHECK(alpha >= 1.0 && alpha <= 3.0, "alpha", "must be in [1, 3]");
  const double e = (alpha - 1.0) * static_cast<double>(slice_len) / 2.0;
  CST_INPUT_CHECK(std::fabs(e - std::round(e)) < 1e-9,
                  "model config: alpha = " << format_float(alpha) << " with slice_len = " << slice_len
                                           << " gives e = (alpha-1)*L/2 = " << e << ", not a whole number");
#undef CST_FIELD_CHECK
}

std::string ModelConfig::configs_dir() { return CST_CONFIGS_DIR; }

ModelConfig ModelConfig::preset(const std::string& name) {
  static const std::pair<const char*, const char*> kPresets[] = {
      {"tiny_lm", "tiny_lm.cfg"},
      {"tiny_mlm", "tiny_mlm.cfg"},
      {"base_mlm", "bert_base_mlm.cfg"},
      {"pg19_longctx", "pg19_longctx.cfg"},
  };
  for (const auto& [preset_name, file] : kPresets)
    if (name == preset_name) return read_model_section(configs_dir() + "/" + file);
  CST_THROW_INPUT("unknown model preset '" << name << "' (tiny_lm, tiny_mlm, base_mlm, pg19_longctx)");
}

}  // namespace cst::model
