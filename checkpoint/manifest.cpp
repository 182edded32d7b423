#include "checkpoint/manifest.h"

#include <algorithm>
#include <charconv>
#include <filesystem>

#include "common/json.h"

#ifndef CST_CODE_VERSION
#define CST_CODE_VERSION "unknown"
#endif

namespace cst::checkpoint {

namespace fs = std::filesystem;

const char* code_version() { return CST_CODE_VERSION; }

std::string option_text(const OptionTexts& options, const std::string& name) {
  for (const auto& [n, value] : options)
    if (n == name) return value;
  return "";
}

std::string step_dir_name(int64_t step) { return "step_" + std::to_string(step); }

std::string shard_name(int rank, int world) {
  return "optim_rank" + std::to_string(rank) + "_of" + std::to_string(world) + ".h5";
}

std::optional<int64_t> parse_step_dir_name(const std::string& name) {
  if (name.size() <= 5 || name.compare(0, 5, "step_") != 0) return std::nullopt;
  if (name.find_first_not_of("0123456789", 5) != std::string::npos) return std::nullopt;
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(name.data() + 5, name.data() + name.size(), n);
  if (ec != std::errc() || end != name.data() + name.size()) return std::nullopt;
  return n;
}

std::vector<std::pair<int64_t, std::string>> list_step_dirs(const std::string& root,
                                                            const std::function<void(const std::string&)>& warn) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (!e.is_directory(ec) || n.rfind("step_", 0) != 0) continue;
    if (auto step = parse_step_dir_name(n)) {
      out.emplace_back(*step, e.path().string());
    } else if (n.find_first_not_of("0123456789", 5) == std::string::npos && n.size() > 5 && warn) {
      warn("ignoring folder '" + e.path().string() + "': its step number does not fit a 64-bit integer");
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// root[key]: an object of text values, each passed to set(name, text) for every name of names
// (key "model": the ModelConfig fields; "optimizer": the options of the OptionSchema). Names it
// lacks are added to missing as "<key>.<name>"; other members are ignored.
void read_table(const Json& root, const std::string& key, const std::vector<std::string>& names,
                const std::function<void(const std::string&, const std::string&)>& set,
                std::vector<std::string>& missing, const std::string& where) {
  const Json& obj = json_member(root, key, where);
  CST_INPUT_CHECK(obj.is_object(), where << ": field '" << key << "' is " << obj.type_name() << ", expected an object");
  for (const std::string& name : names) {
    if (!obj.contains(name)) {
      missing.push_back(key + "." + name);
      continue;
    }
    const std::string text = json_string(obj, name, where + ", object '" + key + "'");
    try {
      set(name, text);
    } catch (const InputError&) {
      CST_THROW_INPUT(where << ": field '" << key << "." << name << "' = '" << text << "' is not a valid value");
    }
  }
}

// files[i]: {name, bytes, <checksum name>: hex}; version 1 knows sha256 only.
FileEntry read_file_entry(const Json& j, int64_t version, const std::string& where, size_t i) {
  const std::string at = where + ", files[" + std::to_string(i) + "]";
  FileEntry e;
  e.name = json_string(j, "name", at);
  CST_INPUT_CHECK(!e.name.empty() && e.name != "." && e.name != ".." && e.name.find('/') == std::string::npos &&
                      e.name.find('\0') == std::string::npos,
                  at << ": field 'name' = '" << e.name << "' is not a plain file name");
  e.bytes = json_int(j, "bytes", at, 0);
  int found = 0;
  for (ChecksumKind k : {ChecksumKind::kXxh3_128, ChecksumKind::kSha256}) {
    if (!j.contains(checksum_name(k)) || (version == 1 && k != ChecksumKind::kSha256)) continue;
    e.checksum = k, e.digest = json_string(j, checksum_name(k), at), ++found;
  }
  CST_INPUT_CHECK(found == 1, at << ": needs exactly one checksum field, "
                                 << (version == 1 ? "'sha256'" : "'xxh3_128' or 'sha256'") << " (found " << found
                                 << ")");
  CST_INPUT_CHECK(e.digest.size() == checksum_hex_size(e.checksum) &&
                      e.digest.find_first_not_of("0123456789abcdef") == std::string::npos,
                  at << ": field '" << checksum_name(e.checksum) << "' = '" << e.digest << "' is not "
                     << checksum_hex_size(e.checksum) << " lower-case hex digits");
  return e;
}

// Reads the typed fields of a manifest whose format and version are known; every InputError
// thrown here (json_* accessors, field tables, range checks) means a damaged manifest.
void read_fields(const Json& root, const std::string& where, const OptionSchema& optim, Manifest& m) {
  m.step = json_int(root, "step", where, 0);
  m.optimizer_steps = json_int(root, "optimizer_steps", where, 0);
  m.loader = dataio::loader_state_from_json(json_member(root, "loader", where), where + ", object 'loader'");
  m.world_size = json_int(root, "world_size", where, 1, kMaxWorldSize);
  m.zero_stage = json_int(root, "zero_stage", where, 0, 1);
  m.flat_numel = json_int(root, "flat_numel", where, 0);
  m.run.seed = json_int(root, "seed", where);
  m.run.global_batch = json_int(root, "global_batch", where, 1);
  m.run.tokenizer_sha256 = json_string(root, "tokenizer_sha256", where);
  m.run.code_version = json_string(root, "code_version", where);

  // "model" and "optimizer": objects of text values, read through the model's field table and
  // the optimizer's option schema.
  std::vector<std::string> names;
  for (const auto& f : model::ModelConfig::fields()) names.push_back(f.name);
  read_table(
      root, "model", names,
      [&](const std::string& name, const std::string& text) {
        find_field(model::ModelConfig::fields(), "", name).set(m.run.model, text);
      },
      m.run.missing, where);
  m.run.optim = optim.defaults;
  names.clear();
  for (const auto& option : optim.defaults) names.push_back(option.first);
  read_table(
      root, "optimizer", names,
      [&](const std::string& name, const std::string& text) {
        for (auto& [n, value] : m.run.optim)
          if (n == name) value = optim.canonical(name, text);
      },
      m.run.missing, where);

  const Json& files = json_member(root, "files", where);
  CST_INPUT_CHECK(files.is_array(), where << ": field 'files' is " << files.type_name() << ", expected an array");
  for (size_t i = 0; i < files.size(); ++i) m.files.push_back(read_file_entry(files[i], m.format_version, where, i));
}

}  // namespace

std::string Manifest::to_json() const {
  using Ordered = nlohmann::ordered_json;  // fields in this order, the format first
  Ordered j;
  j["format"] = format;
  j["format_version"] = format_version;
  j["step"] = step;
  j["optimizer_steps"] = optimizer_steps;
  j["loader"] = Ordered::parse(dataio::to_json(loader).dump());
  j["world_size"] = world_size;
  j["zero_stage"] = zero_stage;
  j["flat_numel"] = flat_numel;
  j["seed"] = run.seed;
  j["global_batch"] = run.global_batch;
  j["tokenizer_sha256"] = run.tokenizer_sha256;
  j["code_version"] = run.code_version;
  Ordered& model = j["model"] = Ordered::object();
  for (const auto& f : model::ModelConfig::fields()) model[f.name] = f.get(run.model);
  Ordered& optim = j["optimizer"] = Ordered::object();
  for (const auto& [name, value] : run.optim) optim[name] = value;
  Ordered& list = j["files"] = Ordered::array();
  for (const FileEntry& e : files)
    list.push_back({{"name", e.name}, {"bytes", e.bytes}, {checksum_name(e.checksum), e.digest}});
  return j.dump(2, ' ', false, Ordered::error_handler_t::replace) + "\n";
}

Manifest parse_manifest(const std::string& text, const std::string& path, const OptionSchema& optim) {
  const std::string where = "checkpoint manifest '" + path + "'";
  Manifest m;
  try {
    const Json root = parse_json(text, where);
    CST_INPUT_CHECK(root.is_object(), where << ": not a JSON object");
    m.format = json_string(root, "format", where);
    if (m.format == kCheckpointFormat) m.format_version = json_int(root, "format_version", where);
    if (m.format == kCheckpointFormat && m.format_version >= 1 && m.format_version <= kCheckpointVersion)
      read_fields(root, where, optim, m);
  } catch (const InputError& e) {
    throw CorruptCheckpoint(e.what());
  }
  // Another program's file or a newer build's checkpoint: an error, never skipped for an older one.
  CST_INPUT_CHECK(m.format == kCheckpointFormat,
                  where << ": field format = '" << m.format << "', expected '" << kCheckpointFormat << "'");
  CST_INPUT_CHECK(m.format_version >= 1 && m.format_version <= kCheckpointVersion,
                  where << ": field format_version = " << m.format_version << ", this build reads versions 1 to "
                        << kCheckpointVersion);
  return m;
}

void check_compatible(const Manifest& m, const ResumeOptions& now, const std::string& path) {
  const std::string where = "checkpoint manifest '" + path + "'";
  const RunDescription& run = m.run;
  auto missing = [&](const std::string& field) {
    return std::find(run.missing.begin(), run.missing.end(), field) != run.missing.end();
  };
  for (const auto& f : model::ModelConfig::fields()) {
    CST_INPUT_CHECK(!missing("model." + f.name), where << ": field model." << f.name << " is missing");
    const std::string saved = f.get(run.model), cur = f.get(now.run.model);
    CST_INPUT_CHECK(saved == cur, where << ": model." << f.name << " = " << saved << " but the configuration has model."
                                        << f.name << " = " << cur
                                        << (f.name == "vocab_size" ? " (vocabulary mismatch)" : ""));
  }
  CST_INPUT_CHECK(run.tokenizer_sha256.empty() || now.run.tokenizer_sha256.empty() ||
                      run.tokenizer_sha256 == now.run.tokenizer_sha256,
                  where << ": tokenizer_sha256 = " << run.tokenizer_sha256
                        << " but data.tokenizer_sha256 = " << now.run.tokenizer_sha256);
  const std::string& kind = now.optim.kind;
  const bool kind_missing = missing("optimizer." + kind);
  const std::string saved_kind = option_text(run.optim, kind), cur_kind = option_text(now.run.optim, kind);
  CST_INPUT_CHECK(!kind_missing && saved_kind == cur_kind, where << ": optimizer." << kind << " = "
                                                                 << (kind_missing ? "(missing)" : saved_kind) << " but "
                                                                 << kind << " = " << cur_kind);
  CST_INPUT_CHECK(run.seed == now.run.seed, where << ": seed = " << run.seed << " but train.seed = " << now.run.seed
                                                  << " (the data order would change)");
  CST_INPUT_CHECK(
      run.global_batch == now.run.global_batch,
      where << ": global_batch = " << run.global_batch << " but train.global_batch = " << now.run.global_batch);
  CST_INPUT_CHECK(m.step <= now.steps, "checkpoint '" << fs::path(path).parent_path().string() << "' is at step "
                                                      << m.step << ", beyond train.steps = " << now.steps);
}

}  // namespace cst::checkpoint
