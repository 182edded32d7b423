// Classification shards: reading (ids, mask, segments, label, target, example_index), the
// checks made on open, blends of classification corpora, and loader batches that do not depend
// on the world size.
#include <cmath>
#include <set>

#include "common/h5.h"
#include "dataio/blend.h"
#include "dataio/loader.h"
#include "test_util.h"

namespace cst::dataio {
namespace {
using testing::expect_input_error;
using testing::TempDir;
using testing::write_cls_fixture;

SourceOptions cls_options(int64_t num_classes = 0) {
  SourceOptions o;
  o.kind = SampleKind::kCls;
  o.num_classes = num_classes;
  return o;
}

struct Row {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask, seg;
  int64_t label = 99, index = -5;
  float target = 0;
  SampleRow view() { return {ids.data(), mask.data(), seg.data(), nullptr, nullptr, &label, &target, &index}; }
  explicit Row(int64_t s) : ids(static_cast<size_t>(s)), mask(ids.size()), seg(ids.size()) {}
};

TEST(ClsSource, ReadsExamplesLabelsAndIndices) {
  TempDir dir;
  write_cls_fixture(dir.file("a.h5"), 20, 12, 50, 3, 5, "glue/mnli", 100, /*unlabelled_every7=*/true);
  write_cls_fixture(dir.file("b.h5"), 9, 12, 50, 3, 6, "glue/mnli", 120);
  Hdf5Source src(list_shards(dir.path().string()), cls_options(3));
  EXPECT_EQ(src.kind(), SampleKind::kCls);
  EXPECT_EQ(src.num_samples(), 29);
  EXPECT_EQ(src.sample_len(), 12);
  EXPECT_EQ(src.cls_meta().task, "glue/mnli");
  EXPECT_EQ(src.cls_meta().num_classes, 3);
  EXPECT_EQ(src.cls_meta().label_names, (std::vector<std::string>{"class0", "class1", "class2"}));
  Row r(12);
  for (int64_t i = 0; i < src.num_samples(); ++i) {
    src.read(i, r.view());
    const int64_t local = i < 20 ? i : i - 20;
    EXPECT_EQ(r.index, i < 20 ? 100 + local : 120 + local);
    EXPECT_EQ(r.ids[0], 2);
    EXPECT_TRUE(std::isnan(r.target));
    if (i < 20 && local % 7 == 6)
      EXPECT_EQ(r.label, -1) << i;
    else
      EXPECT_EQ(r.label, r.ids[1] % 3) << i;
    int real = 0;
    for (uint8_t m : r.mask) real += m;
    EXPECT_EQ(real, 12 - local % 5);
    EXPECT_EQ(r.seg[1], 0);
    EXPECT_EQ(r.seg[static_cast<size_t>(real - 1)], 1);
  }
}

TEST(ClsSource, RegressionTargets) {
  TempDir dir;
  write_cls_fixture(dir.file("r.h5"), 6, 10, 40, 1, 3, "glue/stsb");
  Hdf5Source src({dir.file("r.h5")}, cls_options(1));
  EXPECT_EQ(src.cls_meta().num_classes, 1);
  EXPECT_TRUE(src.cls_meta().label_names.empty());
  Row r(10);
  for (int64_t i = 0; i < 6; ++i) {
    src.read(i, r.view());
    EXPECT_EQ(r.label, -1);
    EXPECT_TRUE(r.target >= 0 && r.target <= 1) << r.target;
  }
}

TEST(ClsSource, ChecksOnOpen) {
  TempDir dir;
  const std::string a = dir.file("a.h5");
  write_cls_fixture(a, 8, 10, 40, 2);
  expect_input_error([&] { Hdf5Source({a}, cls_options(3)); }, {a, "num_classes 2", "num_classes 3"});
  SourceOptions mlm;
  mlm.kind = SampleKind::kMlm;
  expect_input_error([&] { Hdf5Source({a}, mlm); }, {a, "cst-cls-examples", "MLM shards"});
  testing::write_mlm_fixture(dir.file("m.h5"), 8, 10, 40);
  expect_input_error([&] { Hdf5Source({dir.file("m.h5")}, cls_options()); }, {"cst-mlm-sequences", "classification"});

  auto damaged = [&](const std::string& name, const std::function<void(h5::File&)>& damage) {
    const std::string p = dir.file(name);
    write_cls_fixture(p, 8, 10, 40, 2);
    {
      h5::File f(p, h5::File::Mode::kReadWrite);
      damage(f);
    }
    return p;
  };
  std::string p = damaged("label.h5", [](h5::File& f) {
    H5Ldelete(f.id(), "labels", H5P_DEFAULT);
    const std::vector<int64_t> y{0, 1, 2, 0, 1, 0, 1, 0};
    f.write("labels", y.data(), {8});
  });
  expect_input_error([&] { Hdf5Source({p}, cls_options()); }, {p, "'labels' index 2", "label 2", "[0, 2)"});
  p = damaged("dtype.h5", [](h5::File& f) {
    H5Ldelete(f.id(), "labels", H5P_DEFAULT);
    const std::vector<float> y(8, 1.0f);
    f.write("labels", y.data(), {8});
  });
  expect_input_error([&] { Hdf5Source({p}, cls_options()); }, {p, "'labels'", "float32", "int64"});
  p = damaged("index.h5", [](h5::File& f) {
    H5Ldelete(f.id(), "example_index", H5P_DEFAULT);
    const std::vector<int64_t> y{0, 1, 2, -3, 4, 5, 6, 7};
    f.write("example_index", y.data(), {8});
  });
  expect_input_error([&] { Hdf5Source({p}, cls_options()); }, {p, "'example_index' index 3", "-3"});
  p = damaged("short.h5", [](h5::File& f) {
    H5Ldelete(f.id(), "example_index", H5P_DEFAULT);
    const std::vector<int64_t> y{0, 1, 2};
    f.write("example_index", y.data(), {3});
  });
  expect_input_error([&] { Hdf5Source({p}, cls_options()); }, {p, "'example_index'", "[3]", "[8]"});
  p = damaged("names.h5", [](h5::File& f) { f.set_attr("label_names", std::string("[\"a\", \"b\", \"c\"]")); });
  expect_input_error([&] { Hdf5Source({p}, cls_options()); }, {p, "label_names", "2 strings"});
  p = damaged("classes.h5", [](h5::File& f) { f.set_attr("num_classes", int64_t{0}); });
  expect_input_error([&] { Hdf5Source({p}, cls_options()); }, {p, "num_classes 0"});
  const std::string inf = dir.file("inf.h5");
  write_cls_fixture(inf, 4, 10, 40, 1);
  {
    h5::File f(inf, h5::File::Mode::kReadWrite);
    H5Ldelete(f.id(), "labels", H5P_DEFAULT);
    const std::vector<float> y{0.5f, NAN, INFINITY, 1.0f};
    f.write("labels", y.data(), {4});
  }
  expect_input_error([&] { Hdf5Source({inf}, cls_options()); }, {inf, "'labels' index 2", "infinite"});
  // Shards of one split agree on the task.
  TempDir two;
  write_cls_fixture(two.file("a.h5"), 4, 10, 40, 2, 1, "glue/mrpc");
  write_cls_fixture(two.file("b.h5"), 4, 10, 40, 2, 1, "glue/qqp");
  expect_input_error([&] { Hdf5Source(list_shards(two.path().string()), cls_options()); },
                     {"glue/qqp", "glue/mrpc", "differs"});
}

TEST(ClsSource, BlendsKeepEachCorpusTaskAndAgreeOnClasses) {
  TempDir dir;
  write_cls_fixture(dir.file("m.h5"), 10, 8, 40, 3, 1, "glue/mnli");
  write_cls_fixture(dir.file("mm.h5"), 6, 8, 40, 3, 2, "glue/mnli-mm");
  write_cls_fixture(dir.file("two.h5"), 6, 8, 40, 2, 3);
  auto blend =
      open_blend(parse_blend("1 " + dir.file("m.h5") + " 1 " + dir.file("mm.h5"), "data.valid"), cls_options(3));
  EXPECT_EQ(blend->num_samples(), 16);
  EXPECT_EQ(blend->corpus(1).cls_meta().task, "glue/mnli-mm");
  expect_input_error(
      [&] {
        open_blend(parse_blend("1 " + dir.file("m.h5") + " 1 " + dir.file("two.h5"), "data.valid"), cls_options());
      },
      {"must agree on the classes", "3 classes", "2 classes"});
}

TEST(ClsLoader, BatchesDoNotDependOnWorldSizeAndCarryLabels) {
  TempDir dir;
  write_cls_fixture(dir.file("a.h5"), 50, 8, 40, 2, 9, "glue/sst2", 1000);
  auto src = std::make_shared<Hdf5Source>(std::vector<std::string>{dir.file("a.h5")}, cls_options());
  for (bool train : {true, false}) {
    std::vector<std::vector<int64_t>> per_world;
    for (int world : {1, 2, 4}) {
      std::vector<int64_t> all;
      for (int rank = 0; rank < world; ++rank) {
        LoaderOptions lo;
        lo.global_batch = 8, lo.rank = rank, lo.world_size = world, lo.seed = 3, lo.train = train;
        Loader loader(src, lo);
        for (int k = 0; k < 8; ++k) {
          auto b = loader.next();
          if (!b) break;
          ASSERT_EQ(b->class_labels.size(), static_cast<size_t>(b->rows));
          ASSERT_EQ(b->attention_mask.size(), static_cast<size_t>(b->rows * b->cols));
          for (int64_t i = 0; i < b->rows; ++i) {
            const size_t at = static_cast<size_t>(i);
            EXPECT_EQ(b->example_index[at], 1000 + b->sample_index[at]);
            EXPECT_EQ(b->class_labels[at], b->input_ids[at * 8 + 1] % 2);
            EXPECT_EQ(b->input_ids[at * 8], 2) << "no masking of classification rows";
            all.push_back(b->example_index[at] * 100 + k);
          }
        }
      }
      std::sort(all.begin(), all.end());
      per_world.push_back(all);
    }
    EXPECT_EQ(per_world[0], per_world[1]);
    EXPECT_EQ(per_world[0], per_world[2]);
    EXPECT_EQ(per_world[0].size(), train ? 64u : 50u);
  }
}

}  // namespace
}  // namespace cst::dataio
