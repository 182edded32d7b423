// LoaderState: its JSON form (checkpoint manifests) and the blend comparison made on resume.
#include <cmath>
#include <sstream>

#include "common/error.h"
#include "common/fields.h"
#include "dataio/loader.h"

namespace cst::dataio {

Json to_json(const LoaderState& s) {
  Json j{{"epoch", s.epoch}, {"consumed_samples", s.consumed_samples}};
  if (s.corpora.empty()) return j;
  Json corpora = Json::array();
  for (const CorpusState& c : s.corpora)
    corpora.push_back(Json{{"path", c.path},
                           {"weight", c.weight},
                           {"samples", c.samples},
                           {"epoch", c.epoch},
                           {"consumed_samples", c.consumed_samples}});
  j["corpora"] = std::move(corpora);
  return j;
}

namespace {

// A number field in (lo, hi].
double json_weight(const Json& obj, const std::string& key, const std::string& where) {
  const Json& v = json_member(obj, key, where);
  CST_INPUT_CHECK(v.is_number(), where << ": field '" << key << "' is " << v.type_name() << ", expected a number");
  const double x = v.get<double>();
  CST_INPUT_CHECK(std::isfinite(x) && x > 0 && x <= 1,
                  where << ": field '" << key << "' = " << format_float(x) << " is outside (0, 1]");
  return x;
}

}  // namespace

LoaderState loader_state_from_json(const Json& j, const std::string& where) {
  LoaderState s;
  s.epoch = json_int(j, "epoch", where, 0);
  s.consumed_samples = json_int(j, "consumed_samples", where, 0);
  if (!j.contains("corpora")) return s;
  const Json& corpora = json_member(j, "corpora", where);
  CST_INPUT_CHECK(corpora.is_array() && corpora.size() >= 2,
                  where << ": field 'corpora' must be an array of >= 2 corpora, got " << corpora.type_name()
                        << (corpora.is_array() ? " of " + std::to_string(corpora.size()) : std::string()));
  CST_INPUT_CHECK(s.epoch == 0, where << ": field 'epoch' = " << s.epoch << " must be 0 for a blend (each corpus "
                                      << "has its own epoch)");
  double weights = 0;
  __int128 position = 0;
  for (size_t i = 0; i < corpora.size(); ++i) {
    const std::string at = where + ": corpora[" + std::to_string(i) + "]";
    CorpusState c;
    c.path = json_string(corpora[i], "path", at);
    c.weight = json_weight(corpora[i], "weight", at);
    c.samples = json_int(corpora[i], "samples", at, 1);
    c.epoch = json_int(corpora[i], "epoch", at, 0);
    c.consumed_samples = json_int(corpora[i], "consumed_samples", at, 0, c.samples - 1);
    weights += c.weight;
    position += static_cast<__int128>(c.epoch) * c.samples + c.consumed_samples;
    s.corpora.push_back(std::move(c));
  }
  CST_INPUT_CHECK(std::fabs(weights - 1) <= 1e-9,
                  where << ": the weights of field 'corpora' sum to " << format_float(weights) << ", expected 1");
  CST_INPUT_CHECK(position == s.consumed_samples, where << ": field 'consumed_samples' = " << s.consumed_samples
                                                        << " differs from the corpora's "
                                                        << "positions (sum of epoch * samples + consumed_samples = "
                                                        << static_cast<long double>(position) << ")");
  return s;
}

LoaderState initial_state(const SampleSource& source) {
  LoaderState s;
  const auto* blend = dynamic_cast<const BlendSource*>(&source);
  if (!blend || blend->num_corpora() < 2) return s;
  const std::vector<int64_t> n = blend->corpus_samples();
  for (int j = 0; j < blend->num_corpora(); ++j) {
    const BlendCorpus& c = blend->spec().corpora[static_cast<size_t>(j)];
    s.corpora.push_back({c.path, c.weight, n[static_cast<size_t>(j)], 0, 0});
  }
  return s;
}

namespace {
std::string describe(const LoaderState& s) {
  if (s.corpora.empty()) return "a single corpus";
  BlendSpec spec;
  for (const CorpusState& c : s.corpora) spec.corpora.push_back({c.path, c.weight});
  std::ostringstream os;
  os << "a blend of " << s.corpora.size() << " corpora '" << spec.str() << "' (samples";
  for (const CorpusState& c : s.corpora) os << " " << c.samples;
  os << ")";
  return os.str();
}
}  // namespace

std::string blend_difference(const LoaderState& saved, const LoaderState& fresh) {
  bool same = saved.corpora.size() == fresh.corpora.size();
  for (size_t j = 0; same && j < saved.corpora.size(); ++j)
    same = saved.corpora[j].weight == fresh.corpora[j].weight && saved.corpora[j].samples == fresh.corpora[j].samples;
  if (same) return "";
  return "the state was saved reading " + describe(saved) + ", the data now is " + describe(fresh);
}

}  // namespace cst::dataio
