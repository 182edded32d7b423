#include "model/weights_file.h"

#include <set>

#include "common/error.h"
#include "common/h5.h"

namespace cst::model {

std::map<std::string, std::vector<int64_t>> weight_shapes(const ModelConfig& cfg) {
  const int64_t d = cfg.d_model;
  std::map<std::string, std::vector<int64_t>> s;
  auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    s[name + ".weight"] = {out, in};
    s[name + ".bias"] = {out};
  };
  auto norm = [&](const std::string& name) { s[name + ".weight"] = s[name + ".bias"] = {d}; };
  s["tok_emb.weight"] = {cfg.vocab_size, d};
  if (cfg.effective_pos_emb() == PosEmb::kAbsolute) {
    s["abs_pos"] = {cfg.max_seq_len, d};
  } else {
    s["pos_local"] = {cfg.window(), d};
    s["pos_global"] = {cfg.max_slices(), d};
  }
  for (int64_t i = 0; i < cfg.n_layers; ++i) {
    const std::string l = "layers." + std::to_string(i) + ".";
    norm(l + "ln1");
    for (const char* p : {"q_proj", "k_proj", "v_proj", "o_proj"}) linear(l + "attn." + p, d, d);
    if (cfg.arch == Arch::kCst && cfg.aggregation == Aggregation::kLinear) s[l + "attn.agg_weight"] = {cfg.slice_len};
    norm(l + "ln2");
    linear(l + "ffn.fc1", cfg.d_ff, d);
    linear(l + "ffn.fc2", d, cfg.d_ff);
  }
  norm("ln_f");
  if (cfg.task == Task::kMlm) {
    linear("mlm_head.dense", d, d);
    norm("mlm_head.ln");
    s["mlm_head.bias"] = {cfg.vocab_size};
  } else if (cfg.task == Task::kCls) {
    linear("cls_head.fc1", d, d);
    linear("cls_head.fc2", cfg.num_classes, d);
  }
  return s;
}

ModelConfig read_weights_config(const std::string& path) {
  h5::File f(path, h5::File::Mode::kRead);
  CST_INPUT_CHECK(f.has_attr("format"), "weights file '" << path << "': missing attribute 'format' "
                                                         << "(not a cst-train weights file)");
  const std::string fmt = f.attr_string("format");
  CST_INPUT_CHECK(fmt == kWeightsFormat, "weights file '" << path << "': attribute format = '" << fmt << "', expected '"
                                                          << kWeightsFormat << "'");
  const int64_t ver = f.attr_int("format_version");
  CST_INPUT_CHECK(ver == kWeightsVersion, "weights file '" << path << "': attribute format_version = " << ver
                                                           << ", this build reads " << kWeightsVersion);
  ModelConfig cfg;
  std::set<std::string> known;
  for (const auto& field : ModelConfig::fields()) {
    const std::string key = kWeightsConfigPrefix + field.name;
    known.insert(key);
    CST_INPUT_CHECK(f.has_attr(key), "weights file '" << path << "': missing attribute '" << key << "'");
    try {
      field.set(cfg, f.attr_as_text(key));
    } catch (const InputError& e) {
      CST_THROW_INPUT("weights file '" << path << "': attribute '" << key << "': " << e.what());
    }
  }
  for (const auto& a : f.attr_names())
    CST_INPUT_CHECK(a.rfind(kWeightsConfigPrefix, 0) != 0 || known.count(a),
                    "weights file '" << path << "': unknown attribute '" << a << "'");
  try {
    cfg.validate();
  } catch (const InputError& e) {
    CST_THROW_INPUT("weights file '" << path << "' (config.* attributes): " << e.what());
  }
  // The tensors, before anything is allocated from the config (models and loaders size their
  // buffers by it): names and shapes as the config implies, and stored in full.
  const auto want = weight_shapes(cfg);
  std::set<std::string> in_file;
  for (const std::string& n : f.names()) {
    in_file.insert(n);
    const auto it = want.find(n);
    if (it == want.end()) {
      CST_THROW_INPUT("weights file '" << path << "': extra tensor '" << n << "' (file shape "
                                       << h5::shape_str(f.open(n).shape()) << ") is not a parameter of the model");
    }
    const h5::Dataset ds = f.open(n);
    CST_INPUT_CHECK(ds.shape() == it->second, "weights file '" << path << "': tensor '" << n << "' has shape "
                                                               << h5::shape_str(ds.shape()) << " in the file but "
                                                               << h5::shape_str(it->second)
                                                               << " in the model (its config.* attributes)");
    const h5::DType t = ds.dtype();
    CST_INPUT_CHECK(t == h5::DType::kFloat32 || t == h5::DType::kFloat64,
                    "weights file '" << path << "': tensor '" << n << "' is " << h5::dtype_name(t)
                                     << ", expected float32 or float64");
    ds.check_stored();
  }
  for (const auto& [n, shape] : want)
    CST_INPUT_CHECK(in_file.count(n), "weights file '" << path << "': missing tensor '" << n << "' (model shape "
                                                       << h5::shape_str(shape) << ")");
  return cfg;
}

std::string read_weights_tokenizer(const std::string& path) {
  h5::File f(path, h5::File::Mode::kRead);
  if (!f.has_attr(kWeightsTokenizerAttr)) return "";
  return f.attr_string(kWeightsTokenizerAttr);
}

}  // namespace cst::model
