#include "model/weights_io.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cstdio>
#include <map>
#include <set>

#include "common/error.h"
#include "common/h5.h"
#include "common/output_guard.h"

namespace cst::model {

namespace {

std::vector<int64_t> dims_of(const at::Tensor& t) { return t.sizes().vec(); }
}  // namespace

void save_weights(CstModelImpl& model, const std::string& path, const std::string& tokenizer_sha256) {
  StagedFile staged(path);
  {
    h5::File f(staged.tmp_path(), h5::File::Mode::kCreate);
    f.set_attr("format", std::string(kWeightsFormat));
    f.set_attr("format_version", kWeightsVersion);
    const ModelConfig& cfg = model.config();
    for (const auto& field : ModelConfig::fields()) {
      const std::string key = kWeightsConfigPrefix + field.name, val = field.get(cfg);
      if (field.kind == "int")
        f.set_attr(key, static_cast<int64_t>(std::stoll(val)));
      else if (field.kind == "float")
        f.set_attr(key, std::stod(val));
      else
        f.set_attr(key, val);
    }
    f.set_attr("config_hash", std::to_string(cfg.hash()));
    if (!tokenizer_sha256.empty()) f.set_attr(kWeightsTokenizerAttr, tokenizer_sha256);
    for (const auto& item : model.named_parameters()) {
      at::Tensor t = item.value().detach().to(at::kCPU).contiguous();
      if (t.scalar_type() == at::kDouble) {
        f.write<double>(item.key(), t.data_ptr<double>(), dims_of(t));
      } else {
        t = t.to(at::kFloat).contiguous();
        f.write<float>(item.key(), t.data_ptr<float>(), dims_of(t));
      }
    }
    f.flush();
  }
  staged.commit();
}

void load_weights(CstModelImpl& model, const std::string& path) {
  read_weights_config(path);  // format and version checks
  h5::File f(path, h5::File::Mode::kRead);
  auto params = model.named_parameters();
  std::set<std::string> in_file;
  for (const auto& n : f.names()) in_file.insert(n);
  // Check everything before changing anything.
  for (const auto& item : params) {
    CST_INPUT_CHECK(in_file.count(item.key()), "weights file '" << path << "': missing tensor '" << item.key()
                                                                << "' (model shape "
                                                                << h5::shape_str(dims_of(item.value())) << ")");
    std::vector<int64_t> fshape = f.open(item.key()).shape();
    CST_INPUT_CHECK(fshape == dims_of(item.value()),
                    "weights file '" << path << "': tensor '" << item.key() << "' has shape " << h5::shape_str(fshape)
                                     << " in the file but " << h5::shape_str(dims_of(item.value())) << " in the model");
  }
  for (const auto& n : in_file)
    CST_INPUT_CHECK(params.contains(n), "weights file '" << path << "': extra tensor '" << n << "' (file shape "
                                                         << h5::shape_str(f.open(n).shape())
                                                         << ") is not a parameter of the model");
  std::map<std::string, at::Tensor> loaded;
  for (const auto& item : params) {
    h5::Dataset ds = f.open(item.key());
    at::Tensor t =
        at::empty(item.value().sizes(),
                  at::TensorOptions().dtype(item.value().scalar_type() == at::kDouble ? at::kDouble : at::kFloat));
    if (t.scalar_type() == at::kDouble)
      ds.read<double>(t.data_ptr<double>());
    else
      ds.read<float>(t.data_ptr<float>());
    loaded[item.key()] = t;
  }
  at::NoGradGuard no_grad;
  for (auto& item : params) item.value().copy_(loaded.at(item.key()));
}

CstModel load_model(const std::string& path) {
  CstModel model(read_weights_config(path));
  load_weights(*model, path);
  return model;
}

}  // namespace cst::model
