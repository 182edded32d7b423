#include "launcher/score_cls.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>

#include "common/error.h"
#include "common/h5.h"
#include "common/json.h"
#include "common/output_guard.h"
#include "dataio/source.h"
#include "trainer/cls_metrics.h"

namespace cst::launcher {

bool is_cls_examples(const std::string& path) {
  try {
    const std::vector<std::string> files = dataio::list_shards(path);
    auto lock = h5::lock_library();
    h5::File f(files[0], h5::File::Mode::kRead);
    return f.has_attr("format") && f.attr_string("format") == dataio::kClsFormat;
  } catch (const InputError&) {
    return false;
  }
}

namespace {

std::string format_value(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", v);
  return buf;
}

// The GLUE submission TSV: a header, then one row per example ordered by example_index.
void write_glue_tsv(const std::string& path, const std::vector<int64_t>& index, const std::vector<double>& pred,
                    const dataio::ClsMeta& meta) {
  std::vector<size_t> order(index.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return index[a] < index[b]; });
  StagedFile staged(path);
  {
    std::ofstream out(staged.tmp_path());
    out << "index\tprediction\n";
    for (size_t i : order) {
      out << index[i] << "\t";
      if (meta.num_classes == 1)
        out << format_value(pred[i]);
      else
        out << meta.label_names[static_cast<size_t>(std::llround(pred[i]))];
      out << "\n";
    }
    CST_INPUT_CHECK(out.good(), "cannot write --glue-submission '" << path << "'");
  }
  staged.commit();
}

}  // namespace

std::string score_cls_examples(model::CstModelImpl& m, const ClsScoreOptions& opt, const std::string& output_path) {
  const model::ModelConfig& cfg = m.config();
  CST_INPUT_CHECK(cfg.task == model::Task::kCls, "--input '" << opt.input << "' holds classification examples but the "
                                                             << "model's task is " << model::to_string(cfg.task));
  dataio::SourceOptions so;
  so.kind = dataio::SampleKind::kCls;
  so.vocab_size = cfg.vocab_size;
  so.num_classes = cfg.num_classes;
  dataio::Hdf5Source src(dataio::list_shards(opt.input), so);
  const int64_t n = src.num_samples(), S = src.sample_len(), C = cfg.num_classes;
  CST_INPUT_CHECK(S <= cfg.max_seq_len, "--input '" << src.origin() << "': rows of " << S
                                                    << " tokens exceed the model's max_seq_len = " << cfg.max_seq_len);
  const dataio::ClsMeta meta = src.cls_meta();
  std::vector<int64_t> index(static_cast<size_t>(n)), labels(static_cast<size_t>(n));
  std::vector<double> pred, truth;
  std::vector<float> probs, logits_all;
  torch::NoGradGuard no_grad;
  for (int64_t b0 = 0; b0 < n; b0 += opt.batch_size) {
    const int64_t nb = std::min(opt.batch_size, n - b0);
    torch::Tensor ids = torch::empty({nb, S}, torch::kInt), mask = torch::empty({nb, S}, torch::kByte),
                  seg = torch::empty({nb, S}, torch::kByte);
    for (int64_t i = 0; i < nb; ++i) {
      float target = 0;
      dataio::SampleRow row{ids.data_ptr<int32_t>() + i * S,
                            mask.data_ptr<uint8_t>() + i * S,
                            seg.data_ptr<uint8_t>() + i * S,
                            nullptr,
                            nullptr,
                            &labels[static_cast<size_t>(b0 + i)],
                            &target,
                            &index[static_cast<size_t>(b0 + i)]};
      src.read(b0 + i, row);
      truth.push_back(C == 1 ? target : static_cast<double>(labels[static_cast<size_t>(b0 + i)]));
    }
    torch::Tensor logits = m.forward(ids.to(torch::kLong), mask.to(torch::kBool)).to(torch::kFloat).contiguous();
    torch::Tensor p = C == 1 ? logits.squeeze(-1).contiguous() : torch::softmax(logits, -1).contiguous();
    probs.insert(probs.end(), p.data_ptr<float>(), p.data_ptr<float>() + p.numel());
    logits_all.insert(logits_all.end(), logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
    torch::Tensor best = C == 1 ? p.to(torch::kDouble) : logits.argmax(-1).to(torch::kDouble).contiguous();
    pred.insert(pred.end(), best.data_ptr<double>(), best.data_ptr<double>() + nb);
  }
  {
    h5::File out(output_path, h5::File::Mode::kReadWrite);
    out.set_attr("label_names", Json(meta.label_names).dump());
    out.set_attr("cls_task", meta.task);
    if (C == 1)
      out.write<float>("prediction", probs.data(), {n});
    else
      out.write<float>("probs", probs.data(), {n, C});
    out.write<float>("logits", logits_all.data(), {n, C});
    out.write<int64_t>("example_index", index.data(), {n});
    out.flush();
  }
  if (!opt.glue_submission.empty()) write_glue_tsv(opt.glue_submission, index, pred, meta);
  std::string line;
  int64_t labelled = 0;
  for (double y : truth) labelled += C == 1 ? !std::isnan(y) : y >= 0;
  for (const trainer::NamedMetric& x : trainer::compute_cls_metrics(meta.task, C, pred, truth)) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%s%s %.4f", line.empty() ? "" : " | ", x.name.c_str(), x.value);
    line += buf;
  }
  if (!line.empty()) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), " (%ld labelled examples)", static_cast<long>(labelled));
    line = meta.task + ": " + line + buf;
  }
  return line;
}

}  // namespace cst::launcher
