// Checks shared by the shard readers of dataio/source.cpp and dataio/source_cls.cpp (internal to
// dataio). Each throws cst::InputError naming the file, the dataset and the value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/h5.h"
#include "dataio/format.h"

namespace cst::dataio::detail {

// Opens `name` and checks its element type (one of dtypes) and rank.
h5::Dataset expect(const h5::File& f, const std::string& name, std::vector<h5::DType> dtypes, size_t rank);
// d's shape is exactly `shape`.
void expect_shape(const h5::Dataset& d, const std::vector<int64_t>& shape);

// What a classification shard holds, validated (source_cls.cpp): rows n, row length S.
struct ClsShard {
  ClsMeta meta;
  int64_t rows = 0, seq = 0;
};
// Validates a cst-cls-examples file whose root ShardMeta attributes were read already: the task
// attributes, the datasets' dtypes and shapes (rows >= 1, 1 <= S <= max_len), every label and
// every example_index.
ClsShard scan_cls_shard(const h5::File& f, int64_t max_len);

}  // namespace cst::dataio::detail
