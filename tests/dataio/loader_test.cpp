// The loader: permutation, world-size independence, resume, evaluation pass, prefetch errors
// and dynamic MLM masking.
#include "dataio/loader.h"

#include <algorithm>
#include <map>
#include <set>

#include "dataio/masking.h"
#include "test_util.h"

namespace cst::dataio {
namespace {
using testing::random_tokens;
using testing::TempDir;
using testing::write_mlm_fixture;

TEST(Feistel, IsADeterministicBijection) {
  for (uint64_t n : {1, 2, 3, 7, 64, 100, 1000, 4097}) {
    FeistelPermutation p(n, 42), q(n, 42), other(n, 43);
    std::vector<bool> seen(n, false);
    bool differs = false;
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t v = p(i);
      ASSERT_LT(v, n);
      EXPECT_FALSE(seen[v]) << "n " << n << " value " << v << " twice";
      seen[v] = true;
      EXPECT_EQ(v, q(i));
      differs = differs || other(i) != v;
    }
    if (n > 3) {
      EXPECT_TRUE(differs) << "key does not change the order for n " << n;
    }
  }
}

TEST(Feistel, LooksShuffled) {
  // Not the identity and no long runs of consecutive values.
  FeistelPermutation p(10000, 7);
  int fixed = 0, consecutive = 0;
  for (uint64_t i = 0; i < 10000; ++i) {
    fixed += p(i) == i;
    consecutive += i > 0 && p(i) == p(i - 1) + 1;
  }
  EXPECT_LT(fixed, 20);
  EXPECT_LT(consecutive, 20);
}

std::shared_ptr<SampleSource> memory_source(int64_t samples, int64_t n, uint64_t seed = 9) {
  return std::make_shared<MemoryLmSource>(random_tokens(samples * (n + 1) + 3, 1000, seed), n, 1000);
}

LoaderOptions opts(int64_t g, int rank, int world, bool train = true, uint64_t seed = 5) {
  LoaderOptions o;
  o.global_batch = g;
  o.rank = rank;
  o.world_size = world;
  o.seed = seed;
  o.train = train;
  o.prefetch = 2;
  return o;
}

// The global batches of `steps` steps from `start` at world size W: each is the
// concatenation, in rank order, of the ranks' parts (sample ids and tokens).
struct Global {
  std::vector<int64_t> ids;
  std::vector<int32_t> tokens;
  LoaderState after;
  bool operator==(const Global& o) const { return ids == o.ids && tokens == o.tokens && after == o.after; }
};
// The loaders share `src`: fine for MemoryLmSource, whose read() does not mutate it.
std::vector<Global> run(const std::shared_ptr<SampleSource>& src, int64_t g, int world, int steps,
                        LoaderState start = {}, bool train = true) {
  std::vector<std::unique_ptr<Loader>> loaders;
  for (int r = 0; r < world; ++r) loaders.push_back(std::make_unique<Loader>(src, opts(g, r, world, train), start));
  std::vector<Global> out;
  for (int s = 0; s < steps; ++s) {
    Global b;
    for (int r = 0; r < world; ++r) {
      std::optional<Batch> part = loaders[static_cast<size_t>(r)]->next();
      if (!part) return out;
      EXPECT_EQ(part->rows * world, part->global_rows) << "unequal split with G % W == 0";
      b.ids.insert(b.ids.end(), part->sample_index.begin(), part->sample_index.end());
      b.tokens.insert(b.tokens.end(), part->input_ids.begin(), part->input_ids.end());
      b.after = part->state_after;
      EXPECT_EQ(loaders[static_cast<size_t>(r)]->state(), part->state_after);
    }
    out.push_back(std::move(b));
  }
  return out;
}

TEST(Loader, GlobalBatchesDoNotDependOnWorldSize) {
  // 100 samples, G = 12: 8 steps per epoch (4 samples dropped); 20 steps span 3 epochs.
  // One source per loader: a SampleSource serves one loader (its thread) at a time.
  const int64_t samples = 100, g = 12, n = 7;
  auto one = memory_source(samples, n);
  const std::vector<Global> ref = run(one, g, 1, 20);
  ASSERT_EQ(ref.size(), 20u);
  for (int world : {2, 3, 4}) {
    std::vector<std::shared_ptr<SampleSource>> srcs;
    std::vector<std::unique_ptr<Loader>> loaders;
    for (int r = 0; r < world; ++r) {
      srcs.push_back(memory_source(samples, n));
      loaders.push_back(std::make_unique<Loader>(srcs.back(), opts(g, r, world)));
    }
    for (size_t s = 0; s < ref.size(); ++s) {
      std::vector<int64_t> ids;
      std::vector<int32_t> tokens;
      for (auto& l : loaders) {
        auto b = l->next();
        ASSERT_TRUE(b);
        ASSERT_EQ(b->rows, g / world);
        ids.insert(ids.end(), b->sample_index.begin(), b->sample_index.end());
        tokens.insert(tokens.end(), b->input_ids.begin(), b->input_ids.end());
      }
      EXPECT_EQ(ids, ref[s].ids) << "world " << world << " step " << s;
      EXPECT_EQ(tokens, ref[s].tokens) << "world " << world << " step " << s;
    }
  }
  // Each epoch visits 96 distinct samples; epochs are ordered differently.
  for (int e = 0; e < 2; ++e) {
    std::set<int64_t> seen;
    for (int s = 0; s < 8; ++s)
      seen.insert(ref[static_cast<size_t>(e * 8 + s)].ids.begin(), ref[static_cast<size_t>(e * 8 + s)].ids.end());
    EXPECT_EQ(seen.size(), 96u);
  }
  EXPECT_NE(ref[0].ids, ref[8].ids);
  EXPECT_EQ(ref[7].after, (LoaderState{1, 0}));
  EXPECT_EQ(ref[8].after, (LoaderState{1, 12}));
}

TEST(Loader, TokensAreTheSamplesWindows) {
  auto src = memory_source(50, 7);
  Loader l(src, opts(4, 0, 1));
  auto b = l.next();
  ASSERT_TRUE(b);
  ASSERT_EQ(b->cols, 8);
  for (int64_t i = 0; i < b->rows; ++i) {
    std::vector<int32_t> want(8);
    src->read(b->sample_index[static_cast<size_t>(i)], {want.data()});
    EXPECT_EQ(std::vector<int32_t>(b->input_ids.begin() + i * 8, b->input_ids.begin() + i * 8 + 8), want);
  }
}

TEST(Loader, ResumeAtAnotherWorldSizeGivesTheRemainingStream) {
  const int64_t g = 12;
  const std::vector<Global> ref = run(memory_source(100, 7), g, 1, 20);
  for (int k : {3, 7, 8, 13}) {  // inside an epoch, at its last step, in the next epoch
    for (int world : {2, 3}) {
      const LoaderState saved = run(memory_source(100, 7), g, 4, k).back().after;
      const std::vector<Global> rest = run(memory_source(100, 7), g, world, 20 - k, saved);
      ASSERT_EQ(rest.size(), static_cast<size_t>(20 - k));
      for (size_t s = 0; s < rest.size(); ++s)
        EXPECT_TRUE(rest[s] == ref[static_cast<size_t>(k) + s]) << "k " << k << " world " << world << " step " << s;
    }
  }
}

TEST(Loader, OrderDependsOnSeed) {
  auto a = memory_source(100, 7), b = memory_source(100, 7);
  Loader la(a, opts(12, 0, 1, true, 1)), lb(b, opts(12, 0, 1, true, 2));
  EXPECT_NE(la.next()->sample_index, lb.next()->sample_index);
}

TEST(Loader, EvaluationIsOneSequentialPass) {
  const int64_t samples = 21;
  for (int world : {1, 2, 3}) {
    std::vector<std::shared_ptr<SampleSource>> srcs;
    std::vector<std::unique_ptr<Loader>> loaders;
    for (int r = 0; r < world; ++r) {
      srcs.push_back(memory_source(samples, 5));
      loaders.push_back(std::make_unique<Loader>(srcs.back(), opts(6, r, world, /*train=*/false)));
    }
    std::vector<int64_t> all;
    for (int step = 0; step < 4; ++step)
      for (auto& l : loaders) {
        auto b = l->next();
        ASSERT_TRUE(b) << "step " << step;
        EXPECT_EQ(b->global_rows, step < 3 ? 6 : 3);
        all.insert(all.end(), b->sample_index.begin(), b->sample_index.end());
      }
    std::vector<int64_t> want(samples);
    for (int64_t i = 0; i < samples; ++i) want[static_cast<size_t>(i)] = i;
    EXPECT_EQ(all, want) << "world " << world;
    for (auto& l : loaders) {
      EXPECT_FALSE(l->next());
      EXPECT_FALSE(l->next());  // stays finished
      EXPECT_EQ(l->state(), (LoaderState{0, samples}));
    }
  }
}

// A source that fails at one sample, as a corrupt shard would.
class FailingSource : public MemoryLmSource {
 public:
  FailingSource() : MemoryLmSource(random_tokens(400, 100, 1), 7, 100) {}
  void read(int64_t index, const SampleRow& out) override {
    CST_INPUT_CHECK(index != 13, "file 'x.h5' dataset 'tokens' index " << index << ": broken");
    MemoryLmSource::read(index, out);
  }
};

TEST(Loader, ErrorsInThePrefetchThreadReachTheConsumer) {
  Loader l(std::make_shared<FailingSource>(), opts(10, 0, 1, /*train=*/false));
  EXPECT_TRUE(l.next());  // samples 0..9
  testing::expect_input_error([&] { l.next(); }, {"x.h5", "index 13"});
  testing::expect_input_error([&] { l.next(); }, {"x.h5"});  // and keeps failing
}

TEST(Loader, DestructorStopsAFullQueue) {
  for (int i = 0; i < 20; ++i) Loader l(memory_source(100, 7), opts(12, 0, 1));
}

TEST(Loader, RejectsBadOptionsAndStates) {
  auto src = memory_source(100, 7);
  EXPECT_THROW(Loader(src, opts(10, 0, 3)), Error);  // G % W != 0
  EXPECT_THROW(Loader(src, opts(12, 3, 3)), Error);  // rank outside
  testing::expect_input_error([&] { Loader(src, opts(200, 0, 1)); }, {"fewer than one global batch"});
  testing::expect_input_error([&] { Loader(src, opts(12, 0, 1), LoaderState{0, 97}); }, {"consumed_samples 97"});
}

// ---- dynamic MLM masking ---------------------------------------------------------------------
TEST(Masking, IsAPureFunctionOfSeedEpochAndIndex) {
  const SpecialTokens sp{0, 1, 2, 3, 4};
  const auto base = random_tokens(64, 1000, 3, 5);
  const std::vector<uint8_t> mask(64, 1);
  auto masked = [&](uint64_t seed, int64_t epoch, int64_t index) {
    auto ids = base;
    std::vector<int32_t> labels(64);
    apply_mlm_masking(ids.data(), mask.data(), labels.data(), 64, sp, 1000, {}, seed, epoch, index);
    ids.insert(ids.end(), labels.begin(), labels.end());
    return ids;
  };
  EXPECT_EQ(masked(1, 2, 3), masked(1, 2, 3));
  EXPECT_NE(masked(1, 2, 3), masked(2, 2, 3));
  EXPECT_NE(masked(1, 2, 3), masked(1, 3, 3));
  EXPECT_NE(masked(1, 2, 3), masked(1, 2, 4));
}

std::shared_ptr<SampleSource> mlm_source(const std::string& path) {
  SourceOptions o;
  o.kind = SampleKind::kMlm;
  return std::make_shared<Hdf5Source>(std::vector<std::string>{path}, o);
}

TEST(Masking, StatisticsMatchBert) {
  TempDir dir;
  const int64_t rows = 400, s = 128, vocab = 2000;
  write_mlm_fixture(dir.file("m.h5"), rows, s, vocab);
  auto src = mlm_source(dir.file("m.h5"));
  Loader l(src, opts(rows, 0, 1));
  auto b = l.next();
  ASSERT_TRUE(b);
  int64_t candidates = 0, predicted = 0, to_mask = 0, random = 0, kept = 0;
  for (int64_t i = 0; i < rows; ++i) {
    std::vector<int32_t> orig(s), lab(s);
    std::vector<uint8_t> m(s), seg(s);
    int8_t nsp;
    src->read(b->sample_index[static_cast<size_t>(i)], {orig.data(), m.data(), seg.data(), lab.data(), &nsp});
    for (int64_t c = 0; c < s; ++c) {
      const size_t at = static_cast<size_t>(i * s + c);
      const int32_t in = b->input_ids[at], label = b->labels[at], o = orig[static_cast<size_t>(c)];
      const bool special = !m[static_cast<size_t>(c)] || o <= 4;
      if (special) {
        EXPECT_EQ(label, -100);
        EXPECT_EQ(in, o);
        continue;
      }
      ++candidates;
      if (label == -100) {
        EXPECT_EQ(in, o);
        continue;
      }
      EXPECT_EQ(label, o);
      ++predicted;
      if (in == 4) {
        ++to_mask;
      } else if (in == o) {
        ++kept;
      } else {
        ++random;
        EXPECT_FALSE(SpecialTokens({0, 1, 2, 3, 4}).is_special(in)) << "random replacement drew " << in;
      }
    }
  }
  ASSERT_GT(candidates, 40000);
  const double p = static_cast<double>(predicted) / static_cast<double>(candidates);
  EXPECT_NEAR(p, 0.15, 0.01);
  EXPECT_NEAR(static_cast<double>(to_mask) / static_cast<double>(predicted), 0.8, 0.02);
  EXPECT_NEAR(static_cast<double>(random) / static_cast<double>(predicted), 0.1, 0.015);
  EXPECT_NEAR(static_cast<double>(kept) / static_cast<double>(predicted), 0.1, 0.015);
}

TEST(Masking, SameMasksOnEveryWorldSizeAndOnResume) {
  TempDir dir;
  write_mlm_fixture(dir.file("m.h5"), 48, 32, 500);
  auto collect = [&](int world, LoaderState start, int steps) {
    std::vector<std::shared_ptr<SampleSource>> srcs;
    std::vector<std::unique_ptr<Loader>> ls;
    for (int r = 0; r < world; ++r) {
      srcs.push_back(mlm_source(dir.file("m.h5")));
      ls.push_back(std::make_unique<Loader>(srcs.back(), opts(12, r, world), start));
    }
    std::vector<int32_t> all;  // per step: the global batch's ids, then its labels
    for (int s = 0; s < steps; ++s) {
      std::vector<int32_t> ids, labels;
      for (auto& l : ls) {
        auto b = l->next();
        ids.insert(ids.end(), b->input_ids.begin(), b->input_ids.end());
        labels.insert(labels.end(), b->labels.begin(), b->labels.end());
      }
      all.insert(all.end(), ids.begin(), ids.end());
      all.insert(all.end(), labels.begin(), labels.end());
    }
    return all;
  };
  const auto ref = collect(1, {}, 6);  // 4 steps per epoch: crosses into epoch 1
  EXPECT_EQ(collect(4, {}, 6), ref);
  const auto tail = collect(3, {0, 24}, 4);
  EXPECT_EQ(tail, std::vector<int32_t>(ref.begin() + static_cast<std::ptrdiff_t>(ref.size() / 3), ref.end()));
}

TEST(LoaderState, JsonRoundTripAndErrorsNameTheField) {
  const LoaderState s{3, 1234567890123};
  EXPECT_EQ(loader_state_from_json(parse_json(to_json(s).dump(), "m.json"), "m.json"), s);
  auto error_of = [](const std::string& text) {
    try {
      loader_state_from_json(parse_json(text, "m.json"), "m.json: loader");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of(R"({"epoch": 1})").find("m.json: loader: missing field 'consumed_samples'"), std::string::npos);
  EXPECT_NE(error_of(R"({"epoch": -1, "consumed_samples": 0})").find("field 'epoch' = -1"), std::string::npos);
  EXPECT_NE(error_of(R"({"epoch": "1", "consumed_samples": 0})").find("field 'epoch'"), std::string::npos);
}

}  // namespace
}  // namespace cst::dataio
