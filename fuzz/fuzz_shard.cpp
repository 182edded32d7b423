// The shard validator: one input = one or two generated shard files (LM token stream, MLM rows
// or NVIDIA BERT layout, docs/DATA.md), valid unless the input damages attributes, datasets or
// values, opened through dataio::Hdf5Source (every check of its constructor) and then read.
// (The value functions below are called for damaged, larger shapes too: they must not index
// past what they were made for.)
#include <cstdint>
#include <string>
#include <vector>

#include "dataio/format.h"
#include "dataio/source.h"
#include "fuzz/fuzz_util.h"

using namespace cst;
using h5::DType;

namespace {

enum class Layout { kLm, kMlm, kNvidia };

void write_shard(FuzzedDataProvider& in, const std::string& path, Layout layout, int64_t vocab) {
  fuzz::H5Gen gen(in, path);
  if (layout != Layout::kNvidia) {
    gen.attr_string("format", layout == Layout::kLm ? dataio::kLmFormat : dataio::kMlmFormat);
    gen.attr_int("format_version", dataio::kFormatVersion);
    gen.attr_int("vocab_size", vocab);
    gen.attr_string("tokenizer_sha256", "00");
    gen.attr_string("created_by", "fuzz");
    gen.attr_string("split", "train");
    int64_t id = 0;
    for (const char* k : {"pad_id", "unk_id", "cls_id", "sep_id", "mask_id"}) gen.attr_int(k, id++);
  }
  auto token = [&](int64_t i) { return (i * 7 + 3) % vocab; };
  if (layout == Layout::kLm) {
    const int64_t t = in.ConsumeIntegralInRange<int64_t>(0, 3000);
    std::vector<int64_t> offsets{0};
    while (offsets.back() < t)
      offsets.push_back(std::min(t, offsets.back() + in.ConsumeIntegralInRange<int64_t>(1, 900)));
    if (offsets.size() == 1) offsets.push_back(t);
    gen.dataset("tokens", vocab <= 65536 ? DType::kUInt16 : DType::kInt32, {t}, token);
    gen.dataset("doc_offsets", DType::kInt64, {static_cast<int64_t>(offsets.size())}, [&](int64_t i) {
      return i < static_cast<int64_t>(offsets.size()) ? offsets[static_cast<size_t>(i)] : t;
    });
  } else {
    const int64_t rows = in.ConsumeIntegralInRange<int64_t>(0, 40), s = in.ConsumeIntegralInRange<int64_t>(0, 64);
    const DType mask_t = layout == Layout::kNvidia ? DType::kInt8 : DType::kUInt8;
    gen.dataset("input_ids", DType::kInt32, {rows, s}, token);
    gen.dataset("input_mask", mask_t, {rows, s}, [](int64_t) { return 1; });
    gen.dataset("segment_ids", mask_t, {rows, s}, [&](int64_t i) { return (i % std::max<int64_t>(s, 1)) > s / 2; });
    if (layout == Layout::kNvidia) {
      const int64_t p = in.ConsumeIntegralInRange<int64_t>(0, 20);
      gen.dataset("masked_lm_positions", DType::kInt32, {rows, p},
                  [&](int64_t i) { return s > 1 && p > 0 ? 1 + (i % p) % (s - 1) : 0; });
      gen.dataset("masked_lm_ids", DType::kInt32, {rows, p}, token);
      gen.dataset("next_sentence_labels", DType::kInt8, {rows}, [](int64_t i) { return i % 2; });
    }
  }
  gen.extras();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const auto layout = static_cast<Layout>(in.ConsumeIntegralInRange<int>(0, 2));
  const int64_t vocab = in.ConsumeBool() ? in.ConsumeIntegralInRange<int64_t>(2, 300) : 70000;
  std::vector<std::string> files{fuzz::scratch("shard-0.h5")};
  if (in.ConsumeIntegralInRange<int>(0, 7) == 7) files.push_back(fuzz::scratch("shard-1.h5"));
  for (const std::string& f : files) write_shard(in, f, layout, vocab);

  dataio::SourceOptions opt;
  opt.kind = (layout == Layout::kLm) != (in.ConsumeIntegralInRange<int>(0, 15) == 15) ? dataio::SampleKind::kLm
                                                                                      : dataio::SampleKind::kMlm;
  opt.seq_len = opt.kind == dataio::SampleKind::kLm
                    ? in.ConsumeIntegralInRange<int64_t>(1, 80)
                    : (in.ConsumeBool() ? 0 : in.ConsumeIntegralInRange<int64_t>(0, 64));
  opt.vocab_size = in.ConsumeBool() ? 0 : vocab;
  fuzz::input_errors_only([&] {
    dataio::Hdf5Source src(files, opt);
    const int64_t len = src.sample_len();
    std::vector<int32_t> ids(static_cast<size_t>(len)), labels(static_cast<size_t>(len));
    std::vector<uint8_t> mask(static_cast<size_t>(len)), seg(static_cast<size_t>(len));
    int8_t nsp = 0;
    const dataio::SampleRow row{ids.data(), mask.data(), seg.data(), labels.data(), &nsp};
    for (int k = 0; k < 3; ++k) src.read(in.ConsumeIntegralInRange<int64_t>(0, src.num_samples() - 1), row);
  });
  return 0;
}
