// cst-prep's JSONL reader: one input = one line of a .jsonl corpus, read for its "text" field.
#include <cstdint>
#include <string>

#include "dataio/text.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string line(reinterpret_cast<const char*>(data), size);
  cst::fuzz::input_errors_only([&] { (void)cst::dataio::json_string_field(line, "text", "file 'fuzz.jsonl' line 1"); });
  return 0;
}
