// cst-train's options: one input = a .cfg file, optionally preceded by a command line (a first
// line starting with "--", split at spaces), parsed as cst-train parses them and validated for
// a world size taken from the input's length.
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "launcher/train_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> args{"cst-train"};
  if (text.rfind("--", 0) == 0) {
    const size_t eol = text.find('\n');
    std::istringstream line(text.substr(0, eol));
    for (std::string a; line >> a;) args.push_back(a);
    text = eol == std::string::npos ? "" : text.substr(eol + 1);
  }
  const std::string path = cst::fuzz::scratch("fuzz.cfg");
  cst::fuzz::write_text(path, text);
  args.push_back("--config");
  args.push_back(path);
  const int world = 1 + static_cast<int>(size % 9);
  cst::fuzz::input_errors_only([&] {
    cst::trainer::TrainConfig cfg;
    if (!cst::launcher::parse_train_options(args, cfg, nullptr)) return;
    (void)cfg.to_string();
    cfg.validate(world);
    (void)cfg.micro_steps(cst::ParallelLayout(cfg.layout_spec(world, 0)));
  });
  return 0;
}
