#include "dataio/format.h"

#include <algorithm>

#include "common/error.h"
#include "common/h5.h"
#include "common/json.h"

namespace cst::dataio {
namespace {

void write_meta(h5::File& f, const ShardMeta& m) {
  f.set_attr("format", m.format);
  f.set_attr("format_version", m.version);
  f.set_attr("vocab_size", m.vocab_size);
  f.set_attr("tokenizer_sha256", m.tokenizer_sha256);
  f.set_attr("created_by", m.created_by);
  f.set_attr("split", m.split);
  f.set_attr("pad_id", int64_t{m.special.pad});
  f.set_attr("unk_id", int64_t{m.special.unk});
  f.set_attr("cls_id", int64_t{m.special.cls});
  f.set_attr("sep_id", int64_t{m.special.sep});
  f.set_attr("mask_id", int64_t{m.special.mask});
}

}  // namespace

void write_lm_shard(const std::string& path, const ShardMeta& meta, const std::vector<int32_t>& tokens,
                    const std::vector<int64_t>& doc_offsets) {
  CST_CHECK(
      !doc_offsets.empty() && doc_offsets.front() == 0 && doc_offsets.back() == static_cast<int64_t>(tokens.size()) &&
          std::is_sorted(doc_offsets.begin(), doc_offsets.end()),
      "write_lm_shard '" << path << "': doc_offsets must run from 0 to " << tokens.size() << " without decreasing");
  h5::File f(path, h5::File::Mode::kCreate);
  ShardMeta m = meta;
  m.format = kLmFormat;
  write_meta(f, m);
  const int64_t n = static_cast<int64_t>(tokens.size());
  h5::WriteOptions tok_opt{{kLmChunkTokens}, 0};
  if (meta.vocab_size <= 65536) {
    std::vector<uint16_t> narrow(tokens.begin(), tokens.end());
    f.write("tokens", narrow.data(), {n}, tok_opt);
  } else {
    f.write("tokens", tokens.data(), {n}, tok_opt);
  }
  f.write("doc_offsets", doc_offsets.data(), {static_cast<int64_t>(doc_offsets.size())}, h5::WriteOptions{{4096}, 0});
}

void write_mlm_shard(const std::string& path, const ShardMeta& meta, int64_t rows, int64_t seq_len,
                     const std::vector<int32_t>& input_ids, const std::vector<int8_t>& input_mask,
                     const std::vector<int8_t>& segment_ids) {
  const size_t n = static_cast<size_t>(rows * seq_len);
  CST_CHECK(input_ids.size() == n && input_mask.size() == n && segment_ids.size() == n,
            "write_mlm_shard '" << path << "': arrays must hold " << rows << " x " << seq_len);
  h5::File f(path, h5::File::Mode::kCreate);
  ShardMeta m = meta;
  m.format = kMlmFormat;
  write_meta(f, m);
  h5::WriteOptions opt{{kMlmChunkRows, seq_len}, 0};
  f.write("input_ids", input_ids.data(), {rows, seq_len}, opt);
  f.write("input_mask", input_mask.data(), {rows, seq_len}, opt);
  f.write("segment_ids", segment_ids.data(), {rows, seq_len}, opt);
}

void write_cls_shard(const std::string& path, const ShardMeta& meta, const ClsMeta& cls, int64_t rows, int64_t seq_len,
                     const std::vector<int32_t>& input_ids, const std::vector<int8_t>& attention_mask,
                     const std::vector<int8_t>& segment_ids, const std::vector<int64_t>& class_labels,
                     const std::vector<float>& targets, const std::vector<int64_t>& example_index) {
  const size_t n = static_cast<size_t>(rows * seq_len), r = static_cast<size_t>(rows);
  CST_CHECK(input_ids.size() == n && attention_mask.size() == n && segment_ids.size() == n && example_index.size() == r,
            "write_cls_shard '" << path << "': arrays must hold " << rows << " x " << seq_len);
  const bool regression = cls.num_classes == 1;
  CST_CHECK(cls.num_classes >= 1 && (regression ? targets.size() == r && class_labels.empty()
                                                : class_labels.size() == r && targets.empty()),
            "write_cls_shard '" << path << "': num_classes " << cls.num_classes << " needs " << rows
                                << (regression ? " float targets" : " class labels"));
  CST_CHECK(regression ? cls.label_names.empty() : cls.label_names.size() == static_cast<size_t>(cls.num_classes),
            "write_cls_shard '" << path << "': " << cls.label_names.size() << " label names for num_classes "
                                << cls.num_classes);
  h5::File f(path, h5::File::Mode::kCreate);
  ShardMeta m = meta;
  m.format = kClsFormat;
  write_meta(f, m);
  f.set_attr("task", cls.task);
  f.set_attr("num_classes", cls.num_classes);
  f.set_attr("label_names", Json(cls.label_names).dump());
  h5::WriteOptions opt{{kMlmChunkRows, seq_len}, 0};
  f.write("input_ids", input_ids.data(), {rows, seq_len}, opt);
  f.write("attention_mask", attention_mask.data(), {rows, seq_len}, opt);
  f.write("segment_ids", segment_ids.data(), {rows, seq_len}, opt);
  if (regression) {
    f.write("labels", targets.data(), {rows});
  } else {
    f.write("labels", class_labels.data(), {rows});
  }
  f.write("example_index", example_index.data(), {rows});
}

}  // namespace cst::dataio
