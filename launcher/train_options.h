// cst-train's options: the INI config file ([group] sections) first, the command line on top,
// into a TrainConfig (trainer/train_config.h). Torch-free, so that the fuzz target of the config
// parser (fuzz/fuzz_config.cpp) runs exactly what cst-train runs.
#pragma once

#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "trainer/train_config.h"

namespace cst::launcher {

// Parses args (args[0] is the program name) into cfg: --config FILE is read first, then every
// --group.key VALUE of the command line overrides it; --resume X is --checkpoint.resume X.
// Returns false when --help was given (the help, with `help_epilogue`, is written to *help when
// help is not null). Throws InputError naming the key, value and file on an unknown key, a bad
// value, a malformed or unreadable config file, or a --config that names a folder (refused, not
// read as an empty configuration). Does not validate(): the caller does, once.
// explicit_keys, if given, receives the keys the config file or the command line set
// (trainer::adopt_init_config refuses a shape they set that differs from init.weights').
bool parse_train_options(const std::vector<std::string>& args, trainer::TrainConfig& cfg, std::ostream* help,
                         const std::string& help_epilogue = "", std::set<std::string>* explicit_keys = nullptr);

}  // namespace cst::launcher
