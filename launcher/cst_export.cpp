// cst-export: writes a model's weights for the Python ecosystem (docs/WEIGHTS.md, "Export").
//
//   cst-export --weights model.h5 --output out/ [--format safetensors] [--overwrite]
//
// --weights is a weights file (docs/WEIGHTS.md), a checkpoint folder step_<N>/ or a checkpoint
// folder with a `latest` file (docs/CHECKPOINT.md; its model.h5 is read). Writes
// <out>/model.safetensors (every parameter, float32, by state-dict name) and <out>/config.json
// (every ModelConfig field with its typed value, the config hash and the tokenizer hash when the
// weights file records one), which scripts/cst_reference.py load_safetensors() reads.
// Safety: the output folder is owned file by file (common/output_folder.h): it may not hold or
// lie inside the input, a non-empty folder needs --overwrite, and only files an earlier
// cst-export wrote there are replaced. Exit 2 on bad input.
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/json.h"
#include "common/output_folder.h"
#include "launcher/tool_main.h"
#include "model/safetensors.h"
#include "model/weights_file.h"
#include "model/weights_io.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;
using namespace cst;

namespace {

constexpr char kTool[] = "cst-export";
constexpr char kTensors[] = "model.safetensors";
constexpr char kConfig[] = "config.json";

// The weights file behind --weights: the file itself, <dir>/model.h5 of a checkpoint step
// folder, or <dir>/<latest>/model.h5 of a checkpoint folder.
std::string weights_file(const std::string& path) {
  if (!fs::is_directory(path)) return path;
  if (fs::is_regular_file(fs::path(path) / "model.h5")) return (fs::path(path) / "model.h5").string();
  const fs::path latest = fs::path(path) / "latest";
  CST_INPUT_CHECK(fs::is_regular_file(latest), "--weights '" << path << "': a folder without model.h5 or latest "
                                                             << "(a checkpoint folder or step_<N> folder is needed)");
  std::ifstream f(latest);
  std::string step;
  std::getline(f, step);
  CST_INPUT_CHECK(step.rfind("step_", 0) == 0 && step.find('/') == std::string::npos,
                  "--weights '" << path << "': file 'latest' names '" << step << "', not a step_<N> folder");
  return (fs::path(path) / step / "model.h5").string();
}

// config.json: every ModelConfig field (not the execution fields) as a JSON number or string.
Json config_json(const model::ModelConfig& cfg, const std::string& tokenizer_sha256) {
  Json j = {{"format", "cst-train"},
            {"format_version", 1},
            {"config_hash", std::to_string(cfg.hash())},
            {"torch_dtype", "float32"}};
  for (const auto& field : model::ModelConfig::fields()) {
    const std::string v = field.get(cfg);
    if (field.kind == "int")
      j[field.name] = std::stoll(v);
    else if (field.kind == "float")
      j[field.name] = std::stod(v);
    else if (field.kind == "bool")
      j[field.name] = v == "true";
    else
      j[field.name] = v;
  }
  if (!tokenizer_sha256.empty()) j["tokenizer_sha256"] = tokenizer_sha256;
  return j;
}

}  // namespace

int main(int argc, char** argv) try {
  std::string weights, output, format = "safetensors";
  bool overwrite = false;
  po::options_description desc("cst-export options");
  desc.add_options()("help,h", "show this help")(
      "weights", po::value(&weights)->required(),
      "weights file (docs/WEIGHTS.md), or a checkpoint folder (its latest step) or step_<N> folder")(
      "output", po::value(&output)->required(), "folder to write model.safetensors and config.json into")(
      "format", po::value(&format)->default_value(format), "output format: safetensors")(
      "overwrite", po::bool_switch(&overwrite), "replace the files of an earlier cst-export run in --output");
  if (!cst::parse_command_line(argc, argv, desc)) return 0;
  CST_INPUT_CHECK(format == "safetensors", "--format '" << format << "': only safetensors is supported");
  const std::string file = weights_file(weights);
  check_no_overlap({"--output", output}, {{"--weights", weights}, {"--weights", file}});

  model::CstModel m = model::load_model(file);  // checks the whole file first (docs/WEIGHTS.md)
  const model::ModelConfig& cfg = m->config();
  const std::string tokenizer_sha256 = model::read_weights_tokenizer(file);  // "" = not recorded

  OutputFolder out({"--output", output}, kTool, overwrite, {kTensors, kConfig});
  std::vector<torch::Tensor> held;
  std::vector<model::SafetensorsTensor> tensors;
  for (const auto& item : m->named_parameters()) {
    held.push_back(item.value().detach().to(torch::kCPU, torch::kFloat).contiguous());
    const torch::Tensor& t = held.back();
    tensors.push_back({item.key(), "F32", t.sizes().vec(), t.data_ptr<float>(), static_cast<size_t>(t.nbytes())});
  }
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"cst.format", "cst-train"}, {"cst.config_hash", std::to_string(cfg.hash())}};
  model::write_safetensors((fs::path(out.staging()) / kTensors).string(), tensors, metadata);
  {
    const std::string path = (fs::path(out.staging()) / kConfig).string();
    std::ofstream f(path);
    f << config_json(cfg, tokenizer_sha256).dump(2) << "\n";
    CST_CHECK(f.flush(), "cannot write '" << path << "'");
  }
  out.commit({kTensors, kConfig});
  std::printf("exported %zu tensors (%s, %s, %.2fM parameters) from %s -> %s/{%s,%s}\n", tensors.size(),
              model::to_string(cfg.arch), model::to_string(cfg.task), m->num_parameters() / 1e6, file.c_str(),
              output.c_str(), kTensors, kConfig);
  return 0;
} catch (...) {
  return cst::report_exception(std::current_exception());
}
