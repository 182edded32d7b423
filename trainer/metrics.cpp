#include "trainer/metrics.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "common/error.h"
#include "common/json.h"
#include "trainer/tensorboard.h"

namespace cst::trainer {
namespace {
std::string eta_text(double s) {
  char buf[32];
  const int64_t t = static_cast<int64_t>(s + 0.5);
  std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", (long)(t / 3600), (long)(t / 60 % 60), (long)(t % 60));
  return buf;
}
double ppl(double loss) { return std::exp(std::min(loss, 50.0)); }
}  // namespace

MetricsSink::MetricsSink(const std::string& dir, bool tensorboard) {
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/metrics.jsonl";
  jsonl_.open(path, std::ios::app);
  CST_INPUT_CHECK(jsonl_.good(), "cannot open '" << path << "' for writing");
  if (tensorboard) tb_ = std::make_unique<TensorBoardWriter>(dir);
}

MetricsSink::~MetricsSink() = default;

void MetricsSink::train(const TrainRecord& r) {
  std::printf(
      "step %6ld | loss %.4f | ppl %9.2f | lr %.3e | grad %.3f | %8.0f tok/s | MFU %5.1f%% | data %4.1f%% | comm "
      "%4.1f%% | %.3f s/step | ETA %s\n",
      (long)r.step, r.loss, ppl(r.loss), r.lr, r.grad_norm, r.tokens_per_s, 100 * r.mfu, 100 * r.data_wait,
      100 * r.comm_wait, r.step_time_s, eta_text(r.eta_s).c_str());
  std::fflush(stdout);
  std::ostringstream os;
  os.precision(9);
  os << "{\"kind\": \"train\", \"step\": " << r.step << ", \"loss\": " << r.loss << ", \"ppl\": " << ppl(r.loss)
     << ", \"lr\": " << r.lr << ", \"grad_norm\": " << r.grad_norm << ", \"tokens_per_s\": " << r.tokens_per_s
     << ", \"mfu\": " << r.mfu << ", \"data_wait\": " << r.data_wait << ", \"comm_wait\": " << r.comm_wait
     << ", \"step_time_s\": " << r.step_time_s << ", \"eta_s\": " << r.eta_s << "}\n";
  jsonl_ << os.str() << std::flush;
  if (tb_) {
    tb_->add_scalar("train/loss", r.loss, r.step);
    tb_->add_scalar("train/perplexity", ppl(r.loss), r.step);
    tb_->add_scalar("train/lr", r.lr, r.step);
    tb_->add_scalar("train/grad_norm", r.grad_norm, r.step);
    tb_->add_scalar("perf/tokens_per_s", r.tokens_per_s, r.step);
    tb_->add_scalar("perf/mfu", r.mfu, r.step);
    tb_->add_scalar("perf/data_wait", r.data_wait, r.step);
    tb_->add_scalar("perf/comm_wait", r.comm_wait, r.step);
    tb_->flush();
  }
}

namespace {
// " | f1 0.8123 | mcc 0.4000" (classification metrics beside accuracy).
std::string metrics_text(const std::vector<NamedMetric>& metrics) {
  std::string out;
  for (const NamedMetric& m : metrics) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), " %s %.4f", m.name.c_str(), m.value);
    out += buf;
  }
  return out;
}
// `, "f1": 0.81, "mcc": 0.4` for metrics.jsonl.
void metrics_json(std::ostream& os, const std::vector<NamedMetric>& metrics) {
  for (const NamedMetric& m : metrics) os << ", " << Json(m.name).dump() << ": " << m.value;
}
}  // namespace

void MetricsSink::eval(const EvalRecord& r) {
  std::string per_corpus;
  for (const CorpusEval& c : r.corpora) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), " | %s loss %.4f ppl %.2f", c.name.c_str(), c.loss, ppl(c.loss));
    per_corpus += buf;
    if (r.classification && c.accuracy >= 0) per_corpus += " acc " + std::to_string(c.accuracy);
    per_corpus += metrics_text(c.metrics);
  }
  std::printf("eval  %6ld | loss %.4f | ppl %9.2f%s%s | %ld %s%s\n", (long)r.step, r.loss, ppl(r.loss),
              r.accuracy >= 0 ? (" | acc " + std::to_string(r.accuracy)).c_str() : "",
              r.metrics.empty() ? "" : (" |" + metrics_text(r.metrics)).c_str(), (long)r.tokens,
              r.classification ? "examples" : "tokens", per_corpus.c_str());
  std::fflush(stdout);
  std::ostringstream os;
  os.precision(9);
  os << "{\"kind\": \"eval\", \"step\": " << r.step << ", \"loss\": " << r.loss << ", \"ppl\": " << ppl(r.loss)
     << ", \"accuracy\": " << r.accuracy << ", \"tokens\": " << r.tokens;
  metrics_json(os, r.metrics);
  if (!r.corpora.empty()) {
    os << ", \"corpora\": {";
    for (size_t j = 0; j < r.corpora.size(); ++j) {
      const CorpusEval& c = r.corpora[j];
      os << (j ? ", " : "") << Json(c.name).dump() << ": {\"loss\": " << c.loss << ", \"ppl\": " << ppl(c.loss)
         << ", \"accuracy\": " << c.accuracy << ", \"tokens\": " << c.tokens << ", \"weight\": " << c.weight;
      metrics_json(os, c.metrics);
      os << "}";
    }
    os << "}";
  }
  os << "}\n";
  jsonl_ << os.str() << std::flush;
  if (tb_) {
    tb_->add_scalar("valid/loss", r.loss, r.step);
    tb_->add_scalar("valid/perplexity", ppl(r.loss), r.step);
    const std::string acc = r.classification ? "accuracy" : "mlm_accuracy";
    if (r.accuracy >= 0) tb_->add_scalar("valid/" + acc, r.accuracy, r.step);
    for (const NamedMetric& m : r.metrics) tb_->add_scalar("valid/" + m.name, m.value, r.step);
    for (const CorpusEval& c : r.corpora) {
      tb_->add_scalar("valid/" + c.name + "/loss", c.loss, r.step);
      tb_->add_scalar("valid/" + c.name + "/perplexity", ppl(c.loss), r.step);
      if (c.accuracy >= 0) tb_->add_scalar("valid/" + c.name + "/" + acc, c.accuracy, r.step);
      for (const NamedMetric& m : c.metrics) tb_->add_scalar("valid/" + c.name + "/" + m.name, m.value, r.step);
    }
    tb_->flush();
  }
}

void MetricsSink::text(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

}  // namespace cst::trainer
