#include "launcher/train_options.h"

#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/error.h"
#include "launcher/tool_main.h"

namespace cst::launcher {
namespace po = boost::program_options;

namespace {

const std::vector<std::pair<std::string, std::string>> kGroups = {{"model", "Model"},
                                                                  {"data", "Data"},
                                                                  {"init", "Fine-tuning"},
                                                                  {"train", "Batching and steps"},
                                                                  {"optim", "Optimizer"},
                                                                  {"dist", "Distributed"},
                                                                  {"checkpoint", "Checkpoint"},
                                                                  {"log", "Logging"},
                                                                  {"debug", "Fault injection (tests)"}};

}  // namespace

bool parse_train_options(const std::vector<std::string>& args, trainer::TrainConfig& cfg, std::ostream* help,
                         const std::string& help_epilogue, std::set<std::string>* explicit_keys) {
  const trainer::TrainConfig defaults;
  po::options_description generic("cst-train options");
  generic.add_options()("help,h", "show this help")("config,c", po::value<std::string>(),
                                                    "INI config file ([group] sections; command line wins)")(
      "resume", po::value<std::string>(),
      "same as --checkpoint.resume: auto = newest complete checkpoint in checkpoint.dir, or a step_<N> folder");
  std::map<std::string, po::options_description> groups;
  for (const auto& [g, title] : kGroups) groups.emplace(g, po::options_description(title + " (" + g + ".*)"));
  for (const auto& f : trainer::TrainConfig::fields()) {
    const std::string g = f.name.substr(0, f.name.find('.'));
    groups.at(g).add_options()(f.name.c_str(), po::value<std::string>()->default_value(f.get(defaults)),
                               f.help.c_str());
  }
  po::options_description all;
  all.add(generic);
  for (const auto& [g, title] : kGroups) all.add(groups.at(g));

  po::variables_map vm;
  reject_option_placeholders(args);
  try {
    std::vector<std::string> tail(args.begin() + (args.empty() ? 0 : 1), args.end());
    po::store(po::command_line_parser(tail).options(all).run(), vm);
    if (vm.count("help")) {
      if (help) *help << all << help_epilogue;
      return false;
    }
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::error_code ec;  // a folder opens and reads as nothing: refused, not an empty configuration
      CST_INPUT_CHECK(!std::filesystem::is_directory(path, ec), "--config '" << path << "' is a folder, not a file");
      std::ifstream file(path, std::ios::binary);
      CST_INPUT_CHECK(file.good(), "cannot read config file '" << path << "'");
      std::stringstream text;
      text << file.rdbuf();
      std::istringstream lines(text.str());
      int lineno = 0;
      for (std::string line; std::getline(lines, line);)
        reject_option_placeholders(line, "config file '" + path + "' line " + std::to_string(++lineno));
      text.seekg(0);
      try {
        po::store(po::parse_config_file<char>(text, all, /*allow_unregistered=*/false), vm);
      } catch (const po::error& e) {
        CST_THROW_INPUT("config file '" << path << "': " << e.what());
      }
    }
    po::notify(vm);
  } catch (const po::error& e) {
    CST_THROW_INPUT(e.what() << " (see --help)");
  }
  for (const auto& f : trainer::TrainConfig::fields())
    if (vm.count(f.name) && !vm[f.name].defaulted()) {
      cfg.set(f.name, vm[f.name].as<std::string>());
      if (explicit_keys) explicit_keys->insert(f.name);
    }
  if (vm.count("resume")) cfg.set("checkpoint.resume", vm["resume"].as<std::string>());
  return true;
}

}  // namespace cst::launcher
