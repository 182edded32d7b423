#include "dataio/blend.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "common/error.h"
#include "common/json.h"
#include "dataio/rng.h"

namespace cst::dataio {

using u128 = unsigned __int128;

std::string BlendSpec::str() const {
  if (corpora.size() == 1) return corpora[0].path;
  std::string out;
  for (const BlendCorpus& c : corpora) {
    char w[32];
    std::snprintf(w, sizeof(w), "%.6g", c.weight);
    out += (out.empty() ? "" : " ") + std::string(w) + " " + c.path;
  }
  return out;
}

std::vector<double> BlendSpec::weights() const {
  std::vector<double> w;
  for (const BlendCorpus& c : corpora) w.push_back(c.weight);
  return w;
}

BlendSpec parse_blend(const std::string& text, const std::string& key) {
  std::vector<std::string> tokens;
  std::istringstream is(text);
  for (std::string t; is >> t;) tokens.push_back(t);
  CST_INPUT_CHECK(!tokens.empty(), key << " is empty: give a shard file or folder, or a blend 'w1 path1 w2 path2 ...'");
  BlendSpec spec;
  if (tokens.size() == 1) {
    spec.corpora.push_back({tokens[0], 1.0});
    return spec;
  }
  const size_t n = tokens.size();
  CST_INPUT_CHECK(n % 2 == 0, key << " = '" << text << "': " << n << " tokens, but a blend is pairs 'weight path'; "
                                  << "weight '" << tokens[n - 1] << "' (token " << n << ") has no path");
  double sum = 0;
  for (size_t i = 0; i < n; i += 2) {
    const std::string& w = tokens[i];
    double x = 0;
    const auto r = std::from_chars(w.data(), w.data() + w.size(), x);
    CST_INPUT_CHECK(r.ec == std::errc() && r.ptr == w.data() + w.size(),
                    key << ": token " << i + 1 << " '" << w << "' is not a weight (a blend is 'w1 path1 w2 path2 ...'; "
                        << "a single path takes no weight)");
    CST_INPUT_CHECK(std::isfinite(x) && x > 0,
                    key << ": weight '" << w << "' (token " << i + 1 << ") must be a finite number > 0");
    for (const BlendCorpus& c : spec.corpora)
      CST_INPUT_CHECK(c.path != tokens[i + 1],
                      key << ": path '" << tokens[i + 1] << "' (token " << i + 2 << ") appears twice in the blend");
    spec.corpora.push_back({tokens[i + 1], x});
    sum += x;
  }
  CST_INPUT_CHECK(std::isfinite(sum), key << ": the weights of '" << text << "' sum to " << sum);
  for (BlendCorpus& c : spec.corpora) c.weight /= sum;
  return spec;
}

std::vector<std::string> corpus_names(const BlendSpec& spec) {
  static const char* const kSplitFolders[] = {"train", "validation", "valid", "test", "dev"};
  std::vector<std::string> names;
  for (size_t j = 0; j < spec.corpora.size(); ++j) {
    std::filesystem::path p = std::filesystem::path(spec.corpora[j].path).lexically_normal();
    std::string name;
    for (auto it = p.end(); it != p.begin();) {
      --it;
      std::string part = it->string();
      if (part.size() > 3 && part.compare(part.size() - 3, 3, ".h5") == 0) part.resize(part.size() - 3);
      const bool split = std::find(std::begin(kSplitFolders), std::end(kSplitFolders), part) != std::end(kSplitFolders);
      if (!part.empty() && part != "." && part != ".." && part != "/" && !split) {
        name = part;
        break;
      }
    }
    names.push_back(name.empty() ? "corpus" : name);
  }
  std::map<std::string, int> seen;
  for (const std::string& n : names) ++seen[n];
  for (size_t j = 0; j < names.size(); ++j)
    if (seen[names[j]] > 1) names[j] += "-" + std::to_string(j);
  return names;
}

// ---- schedule ------------------------------------------------------------------------------
BlendSchedule::BlendSchedule(const std::vector<double>& weights, std::vector<int64_t> corpus_samples, uint64_t seed)
    : n_(std::move(corpus_samples)), seed_(seed) {
  CST_CHECK(!weights.empty() && weights.size() == n_.size(),
            "blend schedule: " << weights.size() << " weights for " << n_.size() << " corpora");
  for (size_t j = 0; j < weights.size(); ++j) {
    CST_CHECK(weights[j] > 0 && weights[j] <= 1,
              "blend weight " << weights[j] << " of corpus " << j << " outside (0, 1]");
    CST_CHECK(n_[j] >= 1, "blend corpus " << j << " holds no sample");
    u_.push_back(std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(std::ldexp(weights[j], 40)))));
  }
  s_.assign(u_.size(), 0);
  uint64_t tail = 0;
  for (size_t j = u_.size(); j-- > 0;) s_[j] = tail += u_[j];
  for (size_t j = 0; j < u_.size(); ++j) o_.push_back(mix(seed, j) % s_[j]);
}

namespace {
// A_j(q) = floor((u q + o) / s), exact.
int64_t apportion(uint64_t u, uint64_t o, uint64_t s, int64_t q) {
  return static_cast<int64_t>((static_cast<u128>(u) * static_cast<u128>(q) + o) / s);
}
}  // namespace

int BlendSchedule::corpus_of(int64_t p, int64_t* m) const {
  CST_CHECK(p >= 0, "blend position " << p << " < 0");
  int64_t q = p;  // p's arrival index at node j
  const int last = corpora() - 1;
  for (int j = 0; j < last; ++j) {
    const size_t k = static_cast<size_t>(j);
    const int64_t a = apportion(u_[k], o_[k], s_[k], q);
    if (apportion(u_[k], o_[k], s_[k], q + 1) > a) {
      *m = a;
      return j;
    }
    q -= a;
  }
  *m = q;
  return last;
}

std::vector<int64_t> BlendSchedule::counts(int64_t k) const {
  CST_CHECK(k >= 0, "blend position " << k << " < 0");
  std::vector<int64_t> c(u_.size());
  int64_t q = k;
  for (size_t j = 0; j + 1 < u_.size(); ++j) {
    c[j] = apportion(u_[j], o_[j], s_[j], q);
    q -= c[j];
  }
  c.back() = q;
  return c;
}

BlendDraw BlendSchedule::draw(int64_t p) const {
  BlendDraw d;
  int64_t m = 0;
  d.corpus = corpus_of(p, &m);
  const uint64_t n = static_cast<uint64_t>(n_[static_cast<size_t>(d.corpus)]);
  d.epoch = m / static_cast<int64_t>(n);
  const FeistelPermutation perm(
      n, mix(mix(seed_, static_cast<uint64_t>(d.epoch)), kCorpusKey + static_cast<uint64_t>(d.corpus)));
  d.sample = static_cast<int64_t>(perm(static_cast<uint64_t>(m) % n));
  return d;
}

// ---- source --------------------------------------------------------------------------------
BlendSource::BlendSource(BlendSpec spec, std::vector<std::shared_ptr<SampleSource>> corpora)
    : spec_(std::move(spec)), corpora_(std::move(corpora)) {
  CST_CHECK(!corpora_.empty() && corpora_.size() == spec_.corpora.size(),
            "blend of " << spec_.corpora.size() << " corpora given " << corpora_.size() << " sources");
  const SampleSource& a = *corpora_[0];
  starts_.push_back(0);
  for (const auto& c : corpora_) {
    const SampleSource& b = *c;
    auto differ = [&](const char* what, const auto& x, const auto& y) {
      CST_THROW_INPUT("the corpora of a blend must agree on " << what << ": '" << b.origin() << "' has " << y << ", '"
                                                              << a.origin() << "' has " << x
                                                              << " (one tokenizer for all corpora: docs/DATA.md)");
    };
    if (b.kind() != a.kind()) differ("the task", to_string(a.kind()), to_string(b.kind()));
    const ClsMeta ca = a.cls_meta(), cb = b.cls_meta();
    if (a.kind() == SampleKind::kCls && (ca.num_classes != cb.num_classes || ca.label_names != cb.label_names))
      differ("the classes", std::to_string(ca.num_classes) + " classes " + Json(ca.label_names).dump(),
             std::to_string(cb.num_classes) + " classes " + Json(cb.label_names).dump());
    if (b.tokenizer_sha256() != a.tokenizer_sha256())
      differ("the tokenizer", "tokenizer_sha256 " + a.tokenizer_sha256(), "tokenizer_sha256 " + b.tokenizer_sha256());
    if (b.vocab_size() != a.vocab_size())
      differ("the vocabulary", "vocab_size " + std::to_string(a.vocab_size()),
             "vocab_size " + std::to_string(b.vocab_size()));
    if (b.sample_len() != a.sample_len())
      differ("the sample length", "samples of " + std::to_string(a.sample_len()) + " tokens",
             "samples of " + std::to_string(b.sample_len()) + " tokens");
    const SpecialTokens x = a.special(), y = b.special();
    if (x.pad != y.pad || x.unk != y.unk || x.cls != y.cls || x.sep != y.sep || x.mask != y.mask)
      differ("the special token ids", "mask_id " + std::to_string(x.mask) + ", pad_id " + std::to_string(x.pad),
             "mask_id " + std::to_string(y.mask) + ", pad_id " + std::to_string(y.pad));
    if (b.static_masks() != a.static_masks())
      differ("masking", a.static_masks() ? "static masks" : "dynamic masks",
             b.static_masks() ? "static masks" : "dynamic masks");
    starts_.push_back(starts_.back() + b.num_samples());
  }
}

std::vector<int64_t> BlendSource::corpus_samples() const {
  std::vector<int64_t> n;
  for (const auto& c : corpora_) n.push_back(c->num_samples());
  return n;
}

int BlendSource::corpus_of_index(int64_t index) const {
  CST_CHECK(index >= 0 && index < num_samples(), "sample " << index << " outside [0, " << num_samples() << ")");
  return static_cast<int>(std::upper_bound(starts_.begin(), starts_.end(), index) - starts_.begin() - 1);
}

void BlendSource::read(int64_t index, const SampleRow& out) {
  const int j = corpus_of_index(index);
  corpora_[static_cast<size_t>(j)]->read(index - starts_[static_cast<size_t>(j)], out);
}

std::shared_ptr<BlendSource> open_blend(const BlendSpec& spec, const SourceOptions& opt) {
  std::vector<std::shared_ptr<SampleSource>> corpora;
  for (const BlendCorpus& c : spec.corpora) corpora.push_back(std::make_shared<Hdf5Source>(list_shards(c.path), opt));
  return std::make_shared<BlendSource>(spec, std::move(corpora));
}

}  // namespace cst::dataio
