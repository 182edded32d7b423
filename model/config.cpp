#include "model/config.h"

#include <cmath>
#include <sstream>
#include <utility>

#include "common/error.h"

namespace cst::model {
namespace {

template <class E>
using EnumTable = std::vector<std::pair<const char*, E>>;

const EnumTable<Arch> kArch = {{"cst", Arch::kCst}, {"full", Arch::kFull}};
const EnumTable<Task> kTask = {{"lm", Task::kLm}, {"mlm", Task::kMlm}, {"cls", Task::kCls}};
const EnumTable<Composition> kComp = {{"local-global", Composition::kLocalGlobal},
                                      {"global-local", Composition::kGlobalLocal},
                                      {"parallel", Composition::kParallel}};
const EnumTable<Aggregation> kAgg = {
    {"mean", Aggregation::kMean}, {"max", Aggregation::kMax}, {"linear", Aggregation::kLinear}};
const EnumTable<PosEmb> kPos = {
    {"auto", PosEmb::kAuto}, {"msvipe", PosEmb::kMsVipe}, {"absolute", PosEmb::kAbsolute}};

template <class E>
const char* enum_name(const EnumTable<E>& t, E v) {
  for (auto& [n, e] : t)
    if (e == v) return n;
  return "?";
}

template <class E>
E enum_parse(const EnumTable<E>& t, const std::string& field, const std::string& text) {
  std::string allowed;
  for (auto& [n, e] : t) {
    if (text == n) return e;
    allowed += std::string(allowed.empty() ? "" : ", ") + n;
  }
  CST_THROW_INPUT("model config: " << field << " = '" << text << "' is not one of {" << allowed << "}");
}

int64_t parse_int(const std::string& field, const std::string& text) {
  size_t pos = 0;
  int64_t v = 0;
  try {
    v = std::stoll(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  CST_INPUT_CHECK(pos == text.size() && !text.empty(),
                  "model config: " << field << " = '" << text << "' is not an integer");
  return v;
}

double parse_float(const std::string& field, const std::string& text) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  CST_INPUT_CHECK(pos == text.size() && !text.empty() && std::isfinite(v),
                  "model config: " << field << " = '" << text << "' is not a finite number");
  return v;
}

std::string fmt_float(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

#define CST_INT_FIELD(NAME, HELP)                                                  \
  ModelConfig::Field {                                                             \
    #NAME, "int", HELP, [](const ModelConfig& c) { return std::to_string(c.NAME); }, \
        [](ModelConfig& c, const std::string& s) { c.NAME = parse_int(#NAME, s); }  \
  }
#define CST_FLOAT_FIELD(NAME, HELP)                                                \
  ModelConfig::Field {                                                             \
    #NAME, "float", HELP, [](const ModelConfig& c) { return fmt_float(c.NAME); },   \
        [](ModelConfig& c, const std::string& s) { c.NAME = parse_float(#NAME, s); } \
  }
#define CST_ENUM_FIELD(NAME, TABLE, HELP)                                                  \
  ModelConfig::Field {                                                                     \
    #NAME, "string", HELP,                                                                 \
        [](const ModelConfig& c) { return std::string(enum_name(TABLE, c.NAME)); },        \
        [](ModelConfig& c, const std::string& s) { c.NAME = enum_parse(TABLE, #NAME, s); } \
  }

}  // namespace

const char* to_string(Arch v) { return enum_name(kArch, v); }
const char* to_string(Task v) { return enum_name(kTask, v); }
const char* to_string(Composition v) { return enum_name(kComp, v); }
const char* to_string(Aggregation v) { return enum_name(kAgg, v); }
const char* to_string(PosEmb v) { return enum_name(kPos, v); }

const std::vector<ModelConfig::Field>& ModelConfig::fields() {
  static const std::vector<Field> kFields = {
      CST_ENUM_FIELD(arch, kArch, "attention: cst (Composite Slice Attention) | full (baseline)"),
      CST_ENUM_FIELD(task, kTask, "lm (causal decoder, tied LM head) | mlm (encoder) | cls"),
      CST_INT_FIELD(vocab_size, "vocabulary size V"),
      CST_INT_FIELD(d_model, "model width D"),
      CST_INT_FIELD(n_heads, "attention heads H (D % H == 0)"),
      CST_INT_FIELD(n_layers, "number of blocks"),
      CST_INT_FIELD(d_ff, "FFN hidden width F"),
      CST_INT_FIELD(max_seq_len, "longest sequence N (multiple of slice_len for cst)"),
      CST_INT_FIELD(slice_len, "slice length L (cst)"),
      CST_FLOAT_FIELD(alpha, "slice extension ratio in [1, 3]; (alpha-1)*L/2 must be whole"),
      CST_FLOAT_FIELD(dropout, "dropout probability in [0, 1)"),
      CST_FLOAT_FIELD(layer_norm_eps, "LayerNorm epsilon"),
      CST_INT_FIELD(num_classes, "classifier outputs (task = cls)"),
      CST_FLOAT_FIELD(init_std, "std of the normal weight init"),
      CST_ENUM_FIELD(composition, kComp, "local-global (CST) | global-local | parallel"),
      CST_ENUM_FIELD(aggregation, kAgg, "slice embedding: mean | max | linear"),
      CST_ENUM_FIELD(pos_emb, kPos, "auto | msvipe (q/k, every layer) | absolute (input)"),
  };
  return kFields;
}

void ModelConfig::set(const std::string& key, const std::string& value) {
  for (const auto& f : fields())
    if (f.name == key) return f.set(*this, value);
  CST_THROW_INPUT("model config: unknown key '" << key << "' (value '" << value << "')");
}

std::string ModelConfig::get(const std::string& key) const {
  for (const auto& f : fields())
    if (f.name == key) return f.get(*this);
  CST_THROW_INPUT("model config: unknown key '" << key << "'");
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

int64_t ModelConfig::window() const {
  return causal() ? slice_len + extension() : slice_len + 2 * extension();
}

void ModelConfig::validate() const {
#define CST_FIELD_CHECK(cond, field, why) \
  CST_INPUT_CHECK(cond, "model config: " << field << " = " << get(field) << ": " << why)
  CST_FIELD_CHECK(vocab_size >= 2, "vocab_size", "must be >= 2");
  CST_FIELD_CHECK(d_model >= 1, "d_model", "must be >= 1");
  CST_FIELD_CHECK(n_heads >= 1, "n_heads", "must be >= 1");
  CST_INPUT_CHECK(d_model % n_heads == 0, "model config: d_model = " << d_model << " is not divisible by n_heads = "
                                                                     << n_heads);
  CST_FIELD_CHECK(n_layers >= 1, "n_layers", "must be >= 1");
  CST_FIELD_CHECK(d_ff >= 1, "d_ff", "must be >= 1");
  CST_FIELD_CHECK(max_seq_len >= 1, "max_seq_len", "must be >= 1");
  CST_FIELD_CHECK(dropout >= 0.0 && dropout < 1.0, "dropout", "must be in [0, 1)");
  CST_FIELD_CHECK(layer_norm_eps > 0.0, "layer_norm_eps", "must be > 0");
  CST_FIELD_CHECK(init_std > 0.0, "init_std", "must be > 0");
  if (task == Task::kCls) CST_FIELD_CHECK(num_classes >= 2, "num_classes", "must be >= 2 for task = cls");
  if (arch == Arch::kFull) {
    CST_FIELD_CHECK(pos_emb != PosEmb::kMsVipe, "pos_emb",
                    "MS-VIPE needs slices; the full-attention baseline uses absolute positions");
    return;
  }
  CST_FIELD_CHECK(slice_len >= 1, "slice_len", "must be >= 1");
  CST_INPUT_CHECK(slice_len <= max_seq_len, "model config: slice_len = " << slice_len
                                                << " exceeds max_seq_len = " << max_seq_len);
  CST_INPUT_CHECK(max_seq_len % slice_len == 0, "model config: max_seq_len = " << max_seq_len
                                                    << " is not a multiple of slice_len = " << slice_len);
  CST_FIELD_CHECK(alpha >= 1.0 && alpha <= 3.0, "alpha", "must be in [1, 3]");
  const double e = (alpha - 1.0) * static_cast<double>(slice_len) / 2.0;
  CST_INPUT_CHECK(std::fabs(e - std::round(e)) < 1e-9,
                  "model config: alpha = " << fmt_float(alpha) << " with slice_len = " << slice_len
                                           << " gives e = (alpha-1)*L/2 = " << e << ", not a whole number");
#undef CST_FIELD_CHECK
}

ModelConfig ModelConfig::preset(const std::string& name) {
  ModelConfig c;
  if (name == "tiny_lm") {
    c.task = Task::kLm;
    c.d_model = 128, c.n_heads = 4, c.n_layers = 2, c.d_ff = 512;
    c.max_seq_len = 256, c.slice_len = 16, c.alpha = 2.0;
  } else if (name == "tiny_mlm") {
    c.task = Task::kMlm;
    c.d_model = 128, c.n_heads = 4, c.n_layers = 2, c.d_ff = 512;
    c.max_seq_len = 128, c.slice_len = 16, c.alpha = 2.0;
  } else if (name == "base_mlm") {  // BERT-base size, the paper's MLM setup (N = 128)
    c.task = Task::kMlm;
    c.vocab_size = 30522, c.d_model = 768, c.n_heads = 12, c.n_layers = 12, c.d_ff = 3072;
    c.max_seq_len = 128, c.slice_len = 16, c.alpha = 2.0;
  } else if (name == "pg19_longctx") {
    c.task = Task::kLm;
    c.vocab_size = 32000, c.d_model = 512, c.n_heads = 8, c.n_layers = 8, c.d_ff = 2048;
    c.max_seq_len = 8192, c.slice_len = 64, c.alpha = 3.0;
  } else {
    CST_THROW_INPUT("unknown model preset '" << name << "' (tiny_lm, tiny_mlm, base_mlm, pg19_longctx)");
  }
  c.validate();
  return c;
}

}  // namespace cst::model
