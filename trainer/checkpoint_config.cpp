#include "trainer/checkpoint_config.h"

#include "checkpoint/manifest.h"

namespace cst::trainer {

namespace {

// The optim.* options of cfg, in field-table order.
checkpoint::OptionTexts optim_texts(const TrainConfig& cfg) {
  checkpoint::OptionTexts out;
  for (const auto& f : TrainConfig::fields())
    if (f.name.rfind("optim.", 0) == 0) out.emplace_back(f.name, f.get(cfg));
  return out;
}

}  // namespace

checkpoint::RunDescription describe_run(const TrainConfig& cfg) {
  checkpoint::RunDescription r;
  r.model = cfg.model;
  r.optim = optim_texts(cfg);
  r.seed = cfg.train.seed;
  r.global_batch = cfg.train.global_batch;
  r.tokenizer_sha256 = cfg.data.tokenizer_sha256;
  r.code_version = checkpoint::code_version();
  return r;
}

checkpoint::OptionSchema optim_schema() {
  checkpoint::OptionSchema s;
  s.defaults = optim_texts(TrainConfig());
  s.kind = "optim.name";
  s.canonical = [](const std::string& name, const std::string& text) {
    const auto& f = find_field(TrainConfig::fields(), "", name);
    TrainConfig tc;
    f.set(tc, text);
    return f.get(tc);
  };
  return s;
}

checkpoint::ResumeOptions resume_options(const TrainConfig& cfg) {
  checkpoint::ResumeOptions o;
  o.resume = cfg.checkpoint.resume;
  o.dir = cfg.checkpoint.resolved_dir(cfg.log.dir);
  o.dir_given = !cfg.checkpoint.dir.empty();
  o.log_dir = cfg.log.dir;
  o.run = describe_run(cfg);
  o.optim = optim_schema();
  o.steps = cfg.train.steps;
  return o;
}

}  // namespace cst::trainer
