#include "trainer/best_checkpoint.h"

#include <cmath>
#include <filesystem>

#include "checkpoint/manifest.h"
#include "common/error.h"
#include "common/files.h"
#include "common/json.h"
#include "trainer/cls_metrics.h"

namespace cst::trainer {

namespace {
std::string last_part(const std::string& metric) { return metric.substr(metric.find_last_of('/') + 1); }

// The value of field m of an evaluation (the record, or one corpus of it); NaN when absent.
double field(const std::string& m, double loss, double accuracy, const std::vector<NamedMetric>& metrics) {
  if (m == "loss") return loss;
  if (m == "ppl") return std::exp(std::min(loss, 50.0));
  if (m == "accuracy" && accuracy >= 0) return accuracy;
  for (const NamedMetric& x : metrics)
    if (x.name == m) return x.value;
  return std::nan("");
}
}  // namespace

BestCheckpoint::BestCheckpoint(std::string metric, std::string dir) : metric_(std::move(metric)), dir_(std::move(dir)) {
  higher_ = higher_is_better(last_part(metric_));
}

double BestCheckpoint::value_of(const EvalRecord& r) const {
  const std::string m = last_part(metric_);
  const std::string middle = metric_.substr(6, metric_.size() - 6 - m.size());  // "" or "<corpus>/"
  double v = std::nan("");
  if (middle.empty()) {
    v = field(m, r.loss, r.accuracy, r.metrics);
  } else {
    for (const CorpusEval& c : r.corpora)
      if (c.name + "/" == middle) v = field(m, c.loss, c.accuracy, c.metrics);
  }
  std::string have = "valid/ loss, ppl";
  if (r.accuracy >= 0) have += ", accuracy";
  for (const NamedMetric& x : r.metrics) have += ", " + x.name;
  for (const CorpusEval& c : r.corpora) have += ", " + c.name + "/...";
  CST_INPUT_CHECK(!std::isnan(v), "checkpoint.keep_best = " << metric_ << ": the validation at step " << r.step
                                                            << " reports no such value (it has " << have << ")");
  return v;
}

bool BestCheckpoint::improves(double value) const {
  if (std::isnan(value)) return false;
  return step_ < 0 || (higher_ ? value > value_ : value < value_);
}

void BestCheckpoint::set(int64_t step, double value) { step_ = step, value_ = value; }

void BestCheckpoint::write() const {
  write_file_atomic(dir_ + "/best.json", Json{{"metric", metric_}, {"value", value_}, {"step", step_}}.dump() + "\n");
}

void BestCheckpoint::restore(int64_t resumed_step) {
  const std::string path = dir_ + "/best.json";
  if (!std::filesystem::exists(path)) return;
  const Json j = parse_json(read_file(path, 1 << 16), path);
  if (json_string(j, "metric", path) != metric_) return;
  const int64_t step = json_int(j, "step", path, 0);
  const Json& v = json_member(j, "value", path);
  CST_INPUT_CHECK(v.is_number(), path << ": field 'value' is " << v.type_name() << ", expected a number");
  if (step <= resumed_step && std::filesystem::is_directory(dir_ + "/" + checkpoint::step_dir_name(step)))
    set(step, v.get<double>());
}

}  // namespace cst::trainer
