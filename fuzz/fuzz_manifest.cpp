// The checkpoint manifest reader (checkpoint/manifest.h): one input = one manifest.json, its
// optimizer options read through cst-train's option table. Besides "InputError or success", a
// manifest that parses must survive its own round trip: to_json() parses again to the same text.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "checkpoint/manifest.h"
#include "fuzz/fuzz_util.h"
#include "trainer/checkpoint_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cst::checkpoint::OptionSchema optim = cst::trainer::optim_schema();
  const std::string text(reinterpret_cast<const char*>(data), size);
  cst::fuzz::input_errors_only([&] {
    const cst::checkpoint::Manifest m = cst::checkpoint::parse_manifest(text, "fuzz/step_1/manifest.json", optim);
    const std::string again = m.to_json();
    const std::string twice = cst::checkpoint::parse_manifest(again, "round trip", optim).to_json();
    if (twice != again) {
      std::fprintf(stderr, "manifest round trip differs:\n%s\n---\n%s\n", again.c_str(), twice.c_str());
      std::abort();
    }
    cst::trainer::TrainConfig cfg;
    cfg.data.train = "x";
    cst::checkpoint::check_compatible(m, cst::trainer::resume_options(cfg), "fuzz/step_1");
  });
  return 0;
}
