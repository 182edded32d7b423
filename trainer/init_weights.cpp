// init.weights: copying the encoder tensors of a pretrained model.
#include "trainer/init_weights.h"

#include <ATen/ATen.h>

#include <map>

#include "common/error.h"
#include "common/h5.h"
#include "model/model.h"
#include "model/weights_file.h"

namespace cst::trainer {

namespace {
bool is_head(const std::string& name) { return name.rfind("cls_head.", 0) == 0 || name.rfind("mlm_head.", 0) == 0; }

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}
}  // namespace

std::string InitReport::text() const {
  return "loaded " + std::to_string(loaded.size()) + " tensor(s): " + join(loaded) + "\nnew " +
         std::to_string(fresh.size()) + " tensor(s): " + join(fresh) + "\nleft out " + std::to_string(left_out.size()) +
         " tensor(s) of the source: " + join(left_out);
}

InitReport load_init_weights(model::CstModelImpl& model, const std::string& path) {
  const std::string file = init_weights_file(path);
  const model::ModelConfig src = model::read_weights_config(file);  // checks every tensor's shape and storage
  auto lock = h5::lock_library();
  h5::File f(file, h5::File::Mode::kRead);
  std::map<std::string, std::vector<int64_t>> in_file = model::weight_shapes(src);
  InitReport report;
  std::map<std::string, at::Tensor> loaded;
  for (const auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    const std::vector<int64_t> want = item.value().sizes().vec();
    if (is_head(name) || !in_file.count(name)) {
      report.fresh.push_back(name);
      continue;
    }
    std::vector<int64_t> have = in_file.at(name);
    // Positions: the first rows when the new model is shorter.
    const bool rows = (name == "pos_global" || name == "abs_pos") && have.size() == 2 && want.size() == 2 &&
                      have[1] == want[1] && have[0] >= want[0];
    CST_INPUT_CHECK(rows || have == want, "init.weights '" << file << "': tensor '" << name << "' has shape "
                                                           << h5::shape_str(have) << ", the model needs "
                                                           << h5::shape_str(want));
    const bool dbl = item.value().scalar_type() == at::kDouble;
    at::Tensor t = at::empty(want, at::TensorOptions().dtype(dbl ? at::kDouble : at::kFloat));
    h5::Dataset ds = f.open(name);
    std::vector<int64_t> start(want.size(), 0);
    if (dbl)
      ds.read_slab<double>(start, want, t.data_ptr<double>());
    else
      ds.read_slab<float>(start, want, t.data_ptr<float>());
    loaded[name] = t;
    report.loaded.push_back(have == want ? name
                                         : name + " (first " + std::to_string(want[0]) + " of " +
                                               std::to_string(have[0]) + " rows)");
    in_file.erase(name);
  }
  for (const auto& [name, shape] : in_file) report.left_out.push_back(name);
  at::NoGradGuard no_grad;
  for (auto& item : model.named_parameters())
    if (loaded.count(item.key())) item.value().copy_(loaded.at(item.key()));
  return report;
}

}  // namespace cst::trainer
