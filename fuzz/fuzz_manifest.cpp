// The checkpoint manifest reader (trainer/manifest.h): one input = one manifest.json. Besides
// "InputError or success", a manifest that parses must survive its own round trip: to_json()
// parses again to the same text.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz/fuzz_util.h"
#include "trainer/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  cst::fuzz::input_errors_only([&] {
    const cst::trainer::Manifest m = cst::trainer::parse_manifest(text, "fuzz/step_1/manifest.json");
    const std::string again = m.to_json();
    const std::string twice = cst::trainer::parse_manifest(again, "round trip").to_json();
    if (twice != again) {
      std::fprintf(stderr, "manifest round trip differs:\n%s\n---\n%s\n", again.c_str(), twice.c_str());
      std::abort();
    }
    cst::trainer::TrainConfig cfg;
    cfg.data.train = "x";
    cst::trainer::check_compatible(m, cfg, "fuzz/step_1");
  });
  return 0;
}
