// The weights file checks that run before any tensor is allocated (model/weights_file.h):
// one input = one generated weights file, a valid one (a small model's config.* attributes and
// every tensor of weight_shapes) unless the input damages attributes or tensors.
#include <cstdint>
#include <string>

#include "fuzz/fuzz_util.h"
#include "model/weights_file.h"

using namespace cst;

namespace {

model::ModelConfig small_config(FuzzedDataProvider& in) {
  model::ModelConfig c;
  c.arch = in.ConsumeBool() ? model::Arch::kCst : model::Arch::kFull;
  c.task = static_cast<model::Task>(in.ConsumeIntegralInRange<int>(0, 2));
  c.aggregation = static_cast<model::Aggregation>(in.ConsumeIntegralInRange<int>(0, 2));
  c.pos_emb = c.arch == model::Arch::kFull ? model::PosEmb::kAbsolute
                                           : static_cast<model::PosEmb>(in.ConsumeIntegralInRange<int>(0, 2));
  c.vocab_size = in.ConsumeIntegralInRange<int64_t>(2, 40);
  c.n_heads = in.ConsumeIntegralInRange<int64_t>(1, 3);
  c.d_model = c.n_heads * in.ConsumeIntegralInRange<int64_t>(1, 4);
  c.n_layers = in.ConsumeIntegralInRange<int64_t>(1, 3);
  c.d_ff = in.ConsumeIntegralInRange<int64_t>(1, 16);
  c.slice_len = 2 * in.ConsumeIntegralInRange<int64_t>(1, 4);
  c.max_seq_len = c.slice_len * in.ConsumeIntegralInRange<int64_t>(1, 4);
  c.alpha = static_cast<double>(in.ConsumeIntegralInRange<int>(1, 3));
  c.num_classes = in.ConsumeIntegralInRange<int64_t>(2, 5);
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const std::string path = fuzz::scratch("weights.h5");
  const model::ModelConfig cfg = small_config(in);
  {
    fuzz::H5Gen gen(in, path);
    gen.attr_string("format", model::kWeightsFormat);
    gen.attr_int("format_version", model::kWeightsVersion);
    for (const auto& f : model::ModelConfig::fields()) {
      const std::string key = model::kWeightsConfigPrefix + f.name, text = f.get(cfg);
      if (f.kind == "int")
        gen.attr_int(key, std::stoll(text));
      else if (f.kind == "float" && !gen.damage())
        gen.file().set_attr(key, std::stod(text));
      else
        gen.attr_string(key, text);
    }
    fuzz::input_errors_only([&] {
      cfg.validate();
      for (const auto& [name, shape] : model::weight_shapes(cfg))
        gen.dataset(name, gen.damage() ? h5::DType::kFloat64 : h5::DType::kFloat32, shape,
                    [](int64_t i) { return i % 7; });
    });
    gen.extras();
  }
  fuzz::input_errors_only([&] { (void)model::read_weights_config(path); });
  return 0;
}
