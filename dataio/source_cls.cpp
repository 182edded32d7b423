// Classification shards (format cst-cls-examples, docs/DATA.md): validation on open.
#include <cmath>

#include "common/error.h"
#include "common/json.h"
#include "dataio/shard_checks.h"

namespace cst::dataio::detail {

using h5::DType;

ClsShard scan_cls_shard(const h5::File& f, int64_t max_len) {
  const std::string& path = f.path();
  ClsShard s;
  s.meta.task = f.attr_string("task");
  s.meta.num_classes = f.attr_int("num_classes");
  CST_INPUT_CHECK(
      s.meta.num_classes >= 1 && s.meta.num_classes <= 1048576,
      "HDF5 file '" << path << "': num_classes " << s.meta.num_classes << " outside [1, 1048576] (1 = regression)");
  const std::string names_text = f.attr_string("label_names");
  const Json names = parse_json(names_text, "HDF5 file '" + path + "' attribute 'label_names'");
  const size_t want = s.meta.num_classes == 1 ? 0 : static_cast<size_t>(s.meta.num_classes);
  CST_INPUT_CHECK(names.is_array() && names.size() == want,
                  "HDF5 file '" << path << "' attribute 'label_names': " << names_text << ", expected a JSON array of "
                                << want << " strings (num_classes " << s.meta.num_classes << ")");
  for (size_t i = 0; i < names.size(); ++i) {
    CST_INPUT_CHECK(names[i].is_string(), "HDF5 file '" << path << "' attribute 'label_names' index " << i << ": "
                                                        << names[i].dump() << " is not a string");
    s.meta.label_names.push_back(names[i].get<std::string>());
  }
  h5::Dataset ids = expect(f, "input_ids", {DType::kInt32}, 2);
  const std::vector<int64_t> shape = ids.shape();
  CST_INPUT_CHECK(shape[0] > 0, "HDF5 file '" << path << "' dataset 'input_ids': empty shard (0 rows)");
  CST_INPUT_CHECK(shape[1] >= 1 && shape[1] <= max_len, "HDF5 file '" << path << "' dataset 'input_ids': " << shape[1]
                                                                      << " tokens per row, expected 1 to " << max_len);
  ids.check_stored();
  for (const char* name : {"attention_mask", "segment_ids"}) {
    h5::Dataset d = expect(f, name, {DType::kInt8, DType::kUInt8}, 2);
    expect_shape(d, shape);
    d.check_stored();
  }
  s.rows = shape[0], s.seq = shape[1];
  const bool regression = s.meta.num_classes == 1;
  h5::Dataset labels = expect(f, "labels", {regression ? DType::kFloat32 : DType::kInt64}, 1);
  h5::Dataset index = expect(f, "example_index", {DType::kInt64}, 1);
  for (const h5::Dataset* d : {&labels, &index}) {
    expect_shape(*d, {s.rows});
    d->check_stored();
  }
  if (regression) {
    const std::vector<float> y = labels.read<float>();
    for (size_t i = 0; i < y.size(); ++i)
      CST_INPUT_CHECK(!std::isinf(y[i]), "HDF5 file '" << path << "' dataset 'labels' index " << i << ": target "
                                                       << y[i] << " is infinite (NaN = no label)");
  } else {
    const std::vector<int64_t> y = labels.read<int64_t>();
    for (size_t i = 0; i < y.size(); ++i)
      CST_INPUT_CHECK(y[i] >= -1 && y[i] < s.meta.num_classes,
                      "HDF5 file '" << path << "' dataset 'labels' index " << i << ": label " << y[i] << " outside [0, "
                                    << s.meta.num_classes << ") and not -1 (no label)");
  }
  const std::vector<int64_t> ex = index.read<int64_t>();
  for (size_t i = 0; i < ex.size(); ++i)
    CST_INPUT_CHECK(ex[i] >= 0,
                    "HDF5 file '" << path << "' dataset 'example_index' index " << i << ": value " << ex[i] << " < 0");
  return s;
}

}  // namespace cst::dataio::detail
