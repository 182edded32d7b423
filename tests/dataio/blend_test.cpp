// Data blends: the spec parser, the schedule (proportions, closed form), the blended loader
// (world-size independence, per-corpus epochs, exact resume, evaluation), the state's JSON form
// and the agreement checks between corpora.
#include "dataio/blend.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "dataio/loader.h"
#include "test_util.h"

namespace cst::dataio {
namespace {
using testing::expect_input_error;
using testing::random_tokens;
using testing::TempDir;

// ---- spec ------------------------------------------------------------------------------------
TEST(BlendSpec, ParsesWeightsThenPathsAndNormalises) {
  const BlendSpec one = parse_blend("data/wiki/train", "data.train");
  ASSERT_EQ(one.corpora.size(), 1u);
  EXPECT_EQ(one.corpora[0].path, "data/wiki/train");
  EXPECT_EQ(one.corpora[0].weight, 1.0);
  EXPECT_EQ(one.str(), "data/wiki/train");

  const BlendSpec two = parse_blend("  7 wiki/train\t3   books/train ", "data.train");
  ASSERT_EQ(two.corpora.size(), 2u);
  EXPECT_EQ(two.corpora[0].path, "wiki/train");
  EXPECT_EQ(two.corpora[1].path, "books/train");
  EXPECT_DOUBLE_EQ(two.corpora[0].weight, 0.7);
  EXPECT_DOUBLE_EQ(two.corpora[1].weight, 0.3);
  EXPECT_EQ(two.str(), "0.7 wiki/train 0.3 books/train");
  EXPECT_EQ(parse_blend("0.7 wiki/train 0.3 books/train", "k").weights(), two.weights());

  const BlendSpec three = parse_blend("1 a 1 b 2e0 c", "k");
  EXPECT_EQ(three.weights(), (std::vector<double>{0.25, 0.25, 0.5}));
}

TEST(BlendSpec, ErrorsNameKeyTokenAndValue) {
  expect_input_error([] { parse_blend("   ", "data.train"); }, {"data.train is empty"});
  expect_input_error([] { parse_blend("0.7 wiki 0.3", "data.train"); },
                     {"data.train", "3 tokens", "weight '0.3' (token 3) has no path"});
  expect_input_error([] { parse_blend("wiki books", "data.valid"); }, {"data.valid", "token 1 'wiki' is not a weight"});
  expect_input_error([] { parse_blend("0.5x wiki 1 books", "k"); }, {"token 1 '0.5x' is not a weight"});
  expect_input_error([] { parse_blend("0.7 wiki -0.3 books", "k"); }, {"weight '-0.3' (token 3)", "> 0"});
  expect_input_error([] { parse_blend("0 wiki 1 books", "k"); }, {"weight '0' (token 1)"});
  expect_input_error([] { parse_blend("nan wiki 1 books", "k"); }, {"weight 'nan' (token 1)"});
  expect_input_error([] { parse_blend("1 wiki inf books", "k"); }, {"weight 'inf' (token 3)"});
  expect_input_error([] { parse_blend("1e308 a 1e308 b", "k"); }, {"sum to inf"});
  expect_input_error([] { parse_blend("1 wiki 2 wiki", "k"); }, {"path 'wiki' (token 4) appears twice"});
}

TEST(BlendSpec, CorpusNamesSkipSplitFoldersAndStayUnique) {
  EXPECT_EQ(corpus_names(parse_blend("1 data/wiki/validation 1 data/books/validation/", "k")),
            (std::vector<std::string>{"wiki", "books"}));
  EXPECT_EQ(corpus_names(parse_blend("1 pg19/train/shard-00000.h5 1 train", "k")),
            (std::vector<std::string>{"shard-00000", "corpus"}));
  EXPECT_EQ(corpus_names(parse_blend("1 a/wiki/train 1 b/wiki/train 1 books", "k")),
            (std::vector<std::string>{"wiki-0", "wiki-1", "books"}));
}

// ---- schedule --------------------------------------------------------------------------------
TEST(BlendSchedule, ClosedFormCountsMatchTheStreamAndStayWithinJOfTheWeights) {
  const std::vector<std::vector<double>> cases{{0.7, 0.3},     {0.5, 0.5},     {0.2, 0.3, 0.5},
                                               {0.999, 0.001}, {0.001, 0.999}, {0.1, 0.2, 0.3, 0.4}};
  for (const auto& w : cases) {
    for (uint64_t seed : {0ull, 1ull, 77ull}) {
      const BlendSchedule s(w, std::vector<int64_t>(w.size(), 1000), seed);
      std::vector<int64_t> seen(w.size(), 0);  // counts by replaying the stream
      for (int64_t p = 0; p <= 20000; ++p) {
        const std::vector<int64_t> c = s.counts(p);
        ASSERT_EQ(c, seen) << "seed " << seed << " position " << p;
        for (size_t j = 0; j < w.size(); ++j)
          ASSERT_LT(std::abs(static_cast<double>(c[j]) - w[j] * static_cast<double>(p)), static_cast<double>(j + 1))
              << "corpus " << j << " at " << p << " seed " << seed;
        int64_t m = -1;
        const int j = s.corpus_of(p, &m);
        ASSERT_EQ(m, seen[static_cast<size_t>(j)]);
        ++seen[static_cast<size_t>(j)];
      }
    }
  }
}

TEST(BlendSchedule, IsExactFarIntoARun) {
  const BlendSchedule s({0.3, 0.3, 0.4}, {5, 6, 7}, 3);
  for (int64_t k : {int64_t{1} << 40, int64_t{1} << 50, (int64_t{1} << 62) - 7}) {
    const std::vector<int64_t> c = s.counts(k);
    EXPECT_EQ(c[0] + c[1] + c[2], k);
    int64_t m = -1;
    const int j = s.corpus_of(k, &m);
    EXPECT_EQ(m, c[static_cast<size_t>(j)]);
    EXPECT_EQ(s.counts(k + 1)[static_cast<size_t>(j)], m + 1);
  }
}

TEST(BlendSchedule, EachCorpusShufflesItsOwnEpochs) {
  const BlendSchedule s({0.6, 0.4}, {50, 7}, 9);
  std::map<int, std::map<int64_t, std::vector<int64_t>>> order;  // corpus -> epoch -> samples
  for (int64_t p = 0; p < 400; ++p) {
    const BlendDraw d = s.draw(p);
    order[d.corpus][d.epoch].push_back(d.sample);
  }
  for (auto& [j, epochs] : order) {
    const size_t n = j == 0 ? 50 : 7;
    for (auto& [e, samples] : epochs) {
      if (samples.size() < n) continue;  // the last, partial epoch
      EXPECT_EQ(std::set<int64_t>(samples.begin(), samples.end()).size(), n) << "corpus " << j << " epoch " << e;
    }
    EXPECT_NE(epochs[0], epochs[1]) << "corpus " << j << ": epochs 0 and 1 in the same order";
  }
}

// ---- the blended loader ----------------------------------------------------------------------
// Corpora as in-memory LM streams with disjoint token ranges (corpus j's ids in [100j, 100j+100)),
// so that every row says where it came from.
std::shared_ptr<BlendSource> memory_blend(const std::string& text, const std::vector<int64_t>& samples, int64_t n = 5) {
  const BlendSpec spec = parse_blend(text, "data.train");
  std::vector<std::shared_ptr<SampleSource>> corpora;
  for (size_t j = 0; j < samples.size(); ++j) {
    auto t = random_tokens(samples[j] * (n + 1), 100, 3 + j);
    for (int32_t& x : t) x += static_cast<int32_t>(100 * j);
    corpora.push_back(std::make_shared<MemoryLmSource>(std::move(t), n, 100 * static_cast<int64_t>(samples.size())));
  }
  return std::make_shared<BlendSource>(spec, std::move(corpora));
}

LoaderOptions opts(int64_t g, int rank, int world, bool train = true) {
  LoaderOptions o;
  o.global_batch = g;
  o.rank = rank;
  o.world_size = world;
  o.seed = 21;
  o.train = train;
  o.prefetch = 2;
  return o;
}

struct Stream {
  std::vector<int64_t> ids;
  std::vector<int32_t> corpus, tokens;
  std::vector<LoaderState> states;  // after each global batch
};

// `steps` global batches at world size W from `start`, each the ranks' parts in rank order.
// Every rank gets its own source, as it would in a job.
Stream run(const std::function<std::shared_ptr<SampleSource>()>& make, int64_t g, int world, int steps,
           LoaderState start = {}, bool train = true) {
  std::vector<std::unique_ptr<Loader>> loaders;
  for (int r = 0; r < world; ++r) loaders.push_back(std::make_unique<Loader>(make(), opts(g, r, world, train), start));
  Stream out;
  for (int s = 0; s < steps; ++s) {
    for (auto& l : loaders) {
      std::optional<Batch> b = l->next();
      if (!b) return out;
      EXPECT_EQ(static_cast<int64_t>(b->corpus.size()), b->rows);
      for (int64_t i = 0; i < b->rows; ++i)  // the tokens are the tagged corpus's
        EXPECT_EQ(b->input_ids[static_cast<size_t>(i * b->cols)] / 100, b->corpus[static_cast<size_t>(i)]);
      out.ids.insert(out.ids.end(), b->sample_index.begin(), b->sample_index.end());
      out.corpus.insert(out.corpus.end(), b->corpus.begin(), b->corpus.end());
      out.tokens.insert(out.tokens.end(), b->input_ids.begin(), b->input_ids.end());
      if (&l == &loaders.back()) out.states.push_back(b->state_after);
    }
  }
  return out;
}

TEST(BlendLoader, ProportionsOver10kSamplesWithinOnePercent) {
  for (const char* spec : {"0.7 wiki 0.3 books", "1 a 2 b 5 c"}) {
    const BlendSpec parsed = parse_blend(spec, "k");
    const std::vector<int64_t> sizes(parsed.corpora.size(), 997);
    const Stream s = run([&] { return memory_blend(spec, sizes); }, 100, 1, 100);
    ASSERT_EQ(s.corpus.size(), 10000u);
    std::vector<double> share(sizes.size(), 0);
    for (int32_t c : s.corpus) share[static_cast<size_t>(c)] += 1e-4;
    for (size_t j = 0; j < share.size(); ++j)
      EXPECT_NEAR(share[j], parsed.corpora[j].weight, 0.01) << spec << " corpus " << j;
    // And every global batch of 100 holds each corpus's share to within J samples.
    for (size_t b = 0; b < 100; ++b)
      for (size_t j = 0; j < share.size(); ++j) {
        const auto first = s.corpus.begin() + static_cast<std::ptrdiff_t>(b * 100);
        const double n = static_cast<double>(std::count(first, first + 100, static_cast<int32_t>(j)));
        EXPECT_NEAR(n, 100 * parsed.corpora[j].weight, static_cast<double>(share.size())) << spec << " batch " << b;
      }
  }
}

TEST(BlendLoader, GlobalStreamIsTheSameOnOneTwoAndFourRanks) {
  // Corpora of 37 and 11 samples: 30 steps of 8 wrap the small one ~6 times.
  auto make = [] { return memory_blend("0.6 wiki 0.4 books", {37, 11}); };
  const Stream ref = run(make, 8, 1, 30);
  ASSERT_EQ(ref.ids.size(), 240u);
  for (int world : {2, 4}) {
    const Stream s = run(make, 8, world, 30);
    EXPECT_EQ(s.ids, ref.ids) << "world " << world;
    EXPECT_EQ(s.corpus, ref.corpus) << "world " << world;
    EXPECT_EQ(s.tokens, ref.tokens) << "world " << world;
    EXPECT_EQ(s.states, ref.states) << "world " << world;
  }
  EXPECT_EQ(ref.states.back().consumed_samples, 240);
  EXPECT_GE(ref.states.back().corpora[1].epoch, 5);
}

TEST(BlendLoader, ExactResumeAtAnotherWorldSizeAndBatchAndThroughJson) {
  auto make = [] { return memory_blend("0.5 a 0.3 b 0.2 c", {29, 13, 5}); };
  const Stream ref = run(make, 12, 1, 20);
  for (int k : {1, 6, 13}) {
    const LoaderState saved = run(make, 12, 4, k).states.back();
    const LoaderState read = loader_state_from_json(parse_json(to_json(saved).dump(), "m.json"), "m.json");
    ASSERT_EQ(read, saved);
    for (int world : {2, 3}) {
      const Stream rest = run(make, 12, world, 20 - k, read);
      EXPECT_EQ(rest.ids, std::vector<int64_t>(ref.ids.begin() + 12 * k, ref.ids.end()))
          << "k " << k << " world " << world;
      EXPECT_EQ(rest.tokens, std::vector<int32_t>(ref.tokens.begin() + 12 * k * 6, ref.tokens.end()));
      EXPECT_EQ(rest.states.back(), ref.states.back());
    }
    // Another global batch continues the same sample stream.
    const Stream halves = run(make, 6, 2, 2 * (20 - k), read);
    EXPECT_EQ(halves.ids, std::vector<int64_t>(ref.ids.begin() + 12 * k, ref.ids.end())) << "k " << k << " G 6";
  }
}

TEST(BlendLoader, RefusesAStateOfAnotherBlendOrOffTheSchedule) {
  auto make = [] { return memory_blend("0.7 wiki 0.3 books", {40, 20}); };
  const LoaderState saved = run(make, 10, 1, 3).states.back();
  // Other weights, other corpora, one corpus.
  expect_input_error(
      [&] {
        Loader(memory_blend("0.5 wiki 0.5 books", {40, 20}), opts(10, 0, 1), saved);
      },
      {"saved reading a blend of 2 corpora '0.7 wiki 0.3 books'", "now is a blend of 2 corpora '0.5 wiki 0.5 books'"});
  expect_input_error(
      [&] {
        Loader(memory_blend("0.7 wiki 0.3 books", {40, 21}), opts(10, 0, 1), saved);
      },
      {"(samples 40 20)", "(samples 40 21)"});
  expect_input_error(
      [&] {
        Loader(memory_blend("1 wiki 1 books 1 pg19", {40, 20, 9}), opts(10, 0, 1), saved);
      },
      {"blend of 3 corpora"});
  expect_input_error(
      [&] { Loader(std::make_shared<MemoryLmSource>(random_tokens(600, 100, 1), 5, 100), opts(10, 0, 1), saved); },
      {"loader state of a blend of 2 corpora", "reads one corpus"});
  expect_input_error([&] { Loader(make(), opts(10, 0, 1), LoaderState{0, 30}); }, {"saved reading a single corpus"});
  LoaderState off = saved;
  off.corpora[0].consumed_samples += 1, off.corpora[1].consumed_samples -= 1;
  expect_input_error([&] { Loader(make(), opts(10, 0, 1), off); }, {"corpus 0 ('wiki')", "the schedule (seed 21)"});
}

TEST(BlendLoader, EvaluationIsOneSequentialPassPerCorpus) {
  auto make = [] { return memory_blend("0.9 wiki 0.1 books", {14, 9}); };
  for (int world : {1, 2, 3}) {
    const Stream s = run(make, 6, world, 100, {}, /*train=*/false);
    std::vector<int64_t> want;
    for (int64_t i = 0; i < 23; ++i) want.push_back(i);
    EXPECT_EQ(s.ids, want) << "world " << world;
    // Batches 6 6 2 | 6 3: none mixes corpora.
    ASSERT_EQ(s.states.size(), 5u);
    EXPECT_EQ(s.states[2].corpora[0].consumed_samples, 14);
    EXPECT_EQ(s.states[2].corpora[1].consumed_samples, 0);
    EXPECT_EQ(s.states[4].consumed_samples, 23);
  }
  LoaderOptions o = opts(6, 0, 1, false);
  o.eval_batches = 1;  // per corpus
  Loader l(make(), o);
  std::vector<int32_t> corpora;
  while (auto b = l.next()) {
    corpora.push_back(b->corpus.front());
    EXPECT_EQ(b->rows, 6);
  }
  EXPECT_EQ(corpora, (std::vector<int32_t>{0, 1}));
}

TEST(BlendLoader, OneCorpusReadsAsThePlainLoader) {
  auto tokens = random_tokens(100 * 8, 1000, 4);
  auto plain = std::make_shared<MemoryLmSource>(tokens, 7, 1000);
  auto blend = std::make_shared<BlendSource>(
      parse_blend("corpus", "k"),
      std::vector<std::shared_ptr<SampleSource>>{std::make_shared<MemoryLmSource>(tokens, 7, 1000)});
  Loader a(plain, opts(12, 0, 1)), b(blend, opts(12, 0, 1));
  for (int s = 0; s < 10; ++s) {
    auto x = a.next(), y = b.next();
    EXPECT_EQ(x->sample_index, y->sample_index);
    EXPECT_EQ(x->input_ids, y->input_ids);
    EXPECT_EQ(x->state_after, y->state_after);
    EXPECT_TRUE(y->state_after.corpora.empty());
  }
}

TEST(BlendLoader, MlmMasksAreTheSameOnEveryWorldSize) {
  TempDir dir;
  for (const char* c : {"wiki", "books"}) {
    std::filesystem::create_directories(dir.file(c));
    testing::write_mlm_fixture(dir.file(std::string(c) + "/shard-00000.h5"), c[0] == 'w' ? 30 : 7, 32, 500,
                               c[0] == 'w' ? 11 : 12);
  }
  SourceOptions o;
  o.kind = SampleKind::kMlm;
  const BlendSpec spec = parse_blend("0.5 " + dir.file("wiki") + " 0.5 " + dir.file("books"), "k");
  auto collect = [&](int world) {
    std::vector<std::unique_ptr<Loader>> ls;
    for (int r = 0; r < world; ++r) ls.push_back(std::make_unique<Loader>(open_blend(spec, o), opts(8, r, world)));
    std::vector<int32_t> all;      // per step: ids, then labels, of the global batch
    for (int s = 0; s < 6; ++s) {  // 48 samples: the 7-row corpus goes through 3 epochs
      std::vector<int32_t> labels;
      for (auto& l : ls) {
        auto b = l->next();
        all.insert(all.end(), b->input_ids.begin(), b->input_ids.end());
        labels.insert(labels.end(), b->labels.begin(), b->labels.end());
      }
      all.insert(all.end(), labels.begin(), labels.end());
    }
    return all;
  };
  const auto ref = collect(1);
  EXPECT_GT(std::count(ref.begin(), ref.end(), 4), 0) << "no [MASK] drawn";
  EXPECT_EQ(collect(2), ref);
  EXPECT_EQ(collect(4), ref);
}

// ---- state JSON ------------------------------------------------------------------------------
std::string state_error(const std::string& text) {
  try {
    loader_state_from_json(parse_json(text, "m.json"), "m.json: loader");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(BlendState, JsonReadsBothFormsAndRangeChecksEveryField) {
  EXPECT_EQ(loader_state_from_json(parse_json(R"({"epoch": 2, "consumed_samples": 96})", "m"), "m"),
            (LoaderState{2, 96}));
  const std::string good = R"({"epoch": 0, "consumed_samples": 125, "corpora": [)"
                           R"({"path": "w", "weight": 0.75, "samples": 50, "epoch": 1, "consumed_samples": 44},)"
                           R"({"path": "b", "weight": 0.25, "samples": 40, "epoch": 0, "consumed_samples": 31}]})";
  const LoaderState s = loader_state_from_json(parse_json(good, "m"), "m");
  ASSERT_EQ(s.corpora.size(), 2u);
  EXPECT_EQ(s.corpora[0].path, "w");
  EXPECT_EQ(s.corpora[1].consumed_samples, 31);
  EXPECT_EQ(to_json(s), parse_json(good, "m"));
  auto edit = [&](const std::string& from, const std::string& to) {
    std::string t = good;
    t.replace(t.find(from), from.size(), to);
    return state_error(t);
  };
  EXPECT_NE(edit("\"weight\": 0.25", "\"weight\": -0.25")
                .find("m.json: loader: corpora[1]: field 'weight' = -0.25 is outside (0, 1]"),
            std::string::npos);
  EXPECT_NE(edit("\"weight\": 0.25", "\"weight\": 0.5").find("sum to 1.25"), std::string::npos);
  EXPECT_NE(edit("\"consumed_samples\": 44", "\"consumed_samples\": 50")
                .find("corpora[0]: field 'consumed_samples' = 50 is outside [0, 49]"),
            std::string::npos);
  EXPECT_NE(edit("\"samples\": 40", "\"samples\": 0").find("corpora[1]: field 'samples' = 0"), std::string::npos);
  EXPECT_NE(edit("\"epoch\": 1", "\"epoch\": -1").find("corpora[0]: field 'epoch' = -1"), std::string::npos);
  EXPECT_NE(edit("\"path\": \"b\"", "\"path\": 3").find("corpora[1]: field 'path'"), std::string::npos);
  EXPECT_NE(edit("\"consumed_samples\": 125", "\"consumed_samples\": 124").find("'consumed_samples' = 124 differs"),
            std::string::npos);
  EXPECT_NE(edit("{\"epoch\": 0,", "{\"epoch\": 1,").find("field 'epoch' = 1 must be 0 for a blend"),
            std::string::npos);
  EXPECT_NE(state_error(R"({"epoch": 0, "consumed_samples": 0, "corpora": {}})").find("array of >= 2 corpora"),
            std::string::npos);
}

// ---- agreement between corpora -----------------------------------------------------------------
void write_corpus(const std::string& dir, const std::string& sha, int64_t vocab) {
  std::filesystem::create_directories(dir);
  ShardMeta m = testing::test_meta(vocab);
  m.tokenizer_sha256 = sha;
  write_lm_shard(dir + "/shard-00000.h5", m, random_tokens(400, vocab, 1), {0, 400});
}

TEST(BlendSource, CorporaMustShareTokenizerAndVocabulary) {
  TempDir dir;
  write_corpus(dir.file("wiki"), "aaaa", 500);
  write_corpus(dir.file("books"), "bbbb", 500);
  write_corpus(dir.file("pg19"), "aaaa", 600);
  SourceOptions o;
  o.seq_len = 15;
  const std::string wiki = dir.file("wiki/shard-00000.h5"), books = dir.file("books/shard-00000.h5");
  expect_input_error([&] { open_blend(parse_blend("0.5 " + dir.file("wiki") + " 0.5 " + dir.file("books"), "k"), o); },
                     {"agree on the tokenizer", "'" + books + "' has tokenizer_sha256 bbbb",
                      "'" + wiki + "' has tokenizer_sha256 aaaa"});
  expect_input_error([&] { open_blend(parse_blend("1 " + dir.file("wiki") + " 1 " + dir.file("pg19"), "k"), o); },
                     {"vocab_size 600", "vocab_size 500", "pg19/shard-00000.h5"});
  auto ok = open_blend(parse_blend("1 " + dir.file("wiki") + " 3 " + dir.file("wiki") + "/shard-00000.h5", "k"), o);
  EXPECT_EQ(ok->num_samples(), 2 * 25);
  EXPECT_EQ(ok->corpus_of_index(30), 1);
}

}  // namespace
}  // namespace cst::dataio
