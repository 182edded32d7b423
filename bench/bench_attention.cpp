// CST vs full attention: training-step throughput (forward + backward + loss) and peak memory
// at equal model size and equal tokens per step, plus MFU against a GEMM peak measured in the
// same run. The loss is the model's own (CstModelImpl::loss: the LM head's cross entropy in
// chunks, no [B, N, V] logits). Prints a Markdown table.
//
// --device cpu: time is the process's CPU time (all threads), not wall time. On a shared
//   machine other processes steal wall time but not CPU time, so tokens per CPU-second and the
//   float32 GEMM FLOPs per CPU-second stay comparable. Memory: the c10 CPU allocator's peak.
// --device cuda: wall time between device synchronisations, bfloat16 autocast (--bf16), the
//   CUDA caching allocator's peak of allocated bytes (beyond what other variants hold), and the
//   GEMM peak as the best of a 2048^3 and an 8192^3 bfloat16 matmul. A point that runs out of GPU
//   memory prints "OOM". On a card trainer::datasheet_bf16_peak knows, MFU is also given against
//   the datasheet's dense bf16 peak ("MFU vs sheet" columns).
// The variants of one N are timed round robin (one step each per round), so that a shared
// machine's load hits them alike.
//
//   bench_attention [--device cpu|cuda] [--n 512,1024,...] [--max-full-n N] [--tokens T]
//                   [--iters I] [--bf16 auto|on|off] [--sdpa auto|on|off]
//                   [--csa-kernel explicit,fused] [--profile K] [--set KEY=VALUE ...]
//
// --csa-kernel: one CST row per CSA kernel (model.csa_kernel), in the same run; ratios compare
// the last one with every other variant. --sdpa adds full attention through
// at::scaled_dot_product_attention (ModelConfig::full_sdpa: the fused flash / memory-efficient
// kernels on CUDA) beside the explicit N x N scores. --max-full-n caps only the explicit-scores
// variant. MFU counts the attention scores computed and visible only (model/flops.h).
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "common/error.h"
#include "launcher/tool_main.h"
#include "model/autocast_scope.h"
#include "model/loss.h"
#include "model/memory.h"
#include "model/model.h"
#include "trainer/op_profile.h"
#include "trainer/perf.h"
#ifdef CST_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace po = boost::program_options;
using namespace cst;

namespace {

struct Result {
  double tok_s = 0, peak_mib = 0, mfu = 0;
  bool ran = false, oom = false;
  std::string profile;  // --profile: where one more step's time went
};

// Where one point runs: the device, its clock and its memory high-water mark.
class Device {
 public:
  Device(bool cuda, bool bf16) : cuda_(cuda), bf16_(bf16) {}
  torch::Device device() const { return cuda_ ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU); }
  void sync() const {
    if (cuda_) torch::cuda::synchronize();
  }
  double now() const {
    if (!cuda_) return trainer::process_cpu_seconds();
    sync();
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  // Starts a fresh peak-memory window; peak_bytes() reads it: the peak of what was allocated
  // since, beyond what was allocated at the start (other variants' models).
  void reset_peak() {
#ifdef CST_WITH_CUDA
    if (cuda_) {
      c10::cuda::CUDACachingAllocator::emptyCache();
      c10::cuda::CUDACachingAllocator::resetPeakStats(0);
      cuda_base_ = static_cast<double>(allocated().current);
      return;
    }
#endif
    cpu_mem_.reset();
    cpu_mem_ = std::make_unique<model::MemoryTracker>();
  }
  double peak_bytes() const {
#ifdef CST_WITH_CUDA
    if (cuda_) return static_cast<double>(allocated().peak) - cuda_base_;
#endif
    return static_cast<double>(cpu_mem_->peak_bytes());
  }
  // Ends the CPU memory window (the tracker holds the profiler's thread-local slot).
  void stop_cpu_tracking() { cpu_mem_.reset(); }
  void end_point() {
    cpu_mem_.reset();
#ifdef CST_WITH_CUDA
    if (cuda_) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  }
  // Runs fn under bfloat16 autocast when enabled (CUDA only).
  template <class F>
  void autocast(F&& fn) const {
    model::Bf16Autocast ac(cuda_ && bf16_);
    fn();
  }

 private:
#ifdef CST_WITH_CUDA
  static c10::CachingAllocator::Stat allocated() {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
  }
  double cuda_base_ = 0;
#endif
  bool cuda_, bf16_;
  std::unique_ptr<model::MemoryTracker> cpu_mem_;
};

// One variant at one N, built and warmed up inside its own memory window.
struct Point {
  model::CstModel m{nullptr};
  torch::Tensor ids, labels;
  double seconds = 0;
  Result r;
};

// Every variant at sequence length n_tok: built and warmed up one after the other (the warm-up
// step measures the peak memory), then timed round robin, one step of each variant per round,
// so that load from other processes hits them alike. skip[i]: variant i is not run.
std::vector<Result> run(Device& dev, const std::vector<model::ModelConfig>& cfgs, const std::vector<bool>& skip,
                        int64_t n_tok, int64_t tokens, int iters, double peak_flops, int profile_top) {
  const int64_t batch = std::max<int64_t>(1, tokens / n_tok);
  std::vector<Point> pts(cfgs.size());
  auto step = [&](Point& p) {
    p.m->zero_grad();
    dev.autocast([&] { p.m->loss(p.ids, {}, p.labels).mean().backward(); });
  };
  auto guarded = [&](Point& p, auto&& fn) {
    try {
      fn();
    } catch (const c10::OutOfMemoryError&) {
      p = Point{};
      p.r.oom = true;
      dev.end_point();
    }
  };
  for (size_t i = 0; i < cfgs.size(); ++i) {
    if (skip[i]) continue;
    Point& p = pts[i];
    guarded(p, [&] {
      dev.reset_peak();  // the peak counts parameters, gradients, activations and temporaries
      torch::manual_seed(0);
      p.m = model::CstModel(cfgs[i]);
      p.m->to(dev.device());
      p.ids = torch::randint(cfgs[i].vocab_size, {batch, n_tok}, torch::kLong).to(dev.device());
      // Next-token labels; the last position predicts nothing.
      p.labels = torch::cat({p.ids.narrow(1, 1, n_tok - 1), torch::full({batch, 1}, -100, p.ids.options())}, 1);
      step(p);
      dev.sync();
      p.r.peak_mib = dev.peak_bytes() / 1048576.0;
      p.r.ran = true;
      dev.stop_cpu_tracking();
    });
  }
  for (int it = 0; it < iters; ++it)
    for (Point& p : pts)
      if (p.r.ran)
        guarded(p, [&] {
          const double t0 = dev.now();
          step(p);
          p.seconds += dev.now() - t0;
        });
  std::vector<Result> out;
  for (size_t i = 0; i < pts.size(); ++i) {
    Point& p = pts[i];
    if (p.r.ran) {
      p.r.tok_s = static_cast<double>(batch * n_tok) * iters / p.seconds;
      p.r.mfu = p.r.tok_s * 3.0 * trainer::forward_flops_per_token(cfgs[i], n_tok) / peak_flops;
      if (profile_top > 0)
        guarded(p, [&] {
          trainer::OpProfile prof = trainer::profile_ops([&] { step(p), dev.sync(); }, dev.device().is_cuda());
          p.r.profile = prof.table(static_cast<size_t>(profile_top));
        });
    }
    out.push_back(p.r);
  }
  dev.end_point();
  return out;
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    CST_INPUT_CHECK(!item.empty() && *end == '\0' && v > 0,
                    "--n: '" << item << "' in '" << s << "' is not a positive integer");
    out.push_back(v);
  }
  CST_INPUT_CHECK(!out.empty(), "--n: empty list");
  return out;
}

std::string cell(const Result& r, double v, const char* fmt) {
  if (r.oom) return "OOM";
  if (!r.ran) return "not run";
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) try {
  int64_t max_full_n = 8192, tokens = 16384;
  int iters = 3, profile_top = 0;
  std::string device = "cpu", n_list = "512,1024,2048,4096,8192,16384", bf16 = "auto", sdpa = "auto";
  std::string csa_kernels = "explicit,fused";
  std::vector<std::string> sets;
  po::options_description desc("bench_attention");
  desc.add_options()("help", "help")("device", po::value(&device)->default_value(device), "cpu | cuda")(
      "n", po::value(&n_list)->default_value(n_list), "sequence lengths N, comma-separated")(
      "max-full-n", po::value(&max_full_n)->default_value(max_full_n), "largest N for full attention")(
      "tokens", po::value(&tokens)->default_value(tokens), "tokens per step (batch = tokens / N)")(
      "iters", po::value(&iters)->default_value(iters), "timed steps per point")(
      "bf16", po::value(&bf16)->default_value(bf16), "auto (on for cuda) | on | off: bfloat16 autocast")(
      "sdpa", po::value(&sdpa)->default_value(sdpa), "auto (on for cuda) | on | off: also full attention through SDPA")(
      "profile", po::value(&profile_top)->default_value(profile_top),
      "after the table: the K operators (CPU self time) and CUDA kernels taking most time in one more step of each "
      "point")("csa-kernel", po::value(&csa_kernels)->default_value(csa_kernels),
               "CSA kernels, comma-separated (auto | explicit | fused): one CST variant each")(
      "set", po::value(&sets)->composing(), "model field override KEY=VALUE");
  if (!cst::parse_command_line(argc, argv, desc)) return 0;
  CST_INPUT_CHECK(device == "cpu" || device == "cuda", "--device: '" << device << "' is not cpu or cuda");
  CST_INPUT_CHECK(bf16 == "auto" || bf16 == "on" || bf16 == "off", "--bf16: '" << bf16 << "' is not auto, on or off");
  CST_INPUT_CHECK(sdpa == "auto" || sdpa == "on" || sdpa == "off", "--sdpa: '" << sdpa << "' is not auto, on or off");
  CST_INPUT_CHECK(iters >= 1, "--iters: " << iters << " must be >= 1");
  const bool cuda = device == "cuda";
  CST_INPUT_CHECK(!cuda || torch::cuda::is_available(), "--device cuda: no CUDA device on this machine");
  CST_INPUT_CHECK(bf16 != "on" || cuda, "--bf16 on needs --device cuda");
  const std::vector<int64_t> ns = parse_list(n_list);

  model::ModelConfig base;
  base.task = model::Task::kLm, base.vocab_size = 1024, base.d_model = 128, base.n_heads = 4;
  base.n_layers = 2, base.d_ff = 512, base.slice_len = 64, base.alpha = 2.0, base.dropout = 0.0;
  base.max_seq_len = *std::max_element(ns.begin(), ns.end());
  for (const auto& kv : sets) {
    CST_INPUT_CHECK(kv.find('=') != std::string::npos, "--set: '" << kv << "' is not KEY=VALUE");
    base.set(kv.substr(0, kv.find('=')), kv.substr(kv.find('=') + 1));
  }
  base.validate();

  Device dev(cuda, bf16 != "off");
  // On CPU in GEMM FLOPs per CPU-second, like the tokens below.
  const trainer::GemmPeak peak = trainer::measure_mfu_peak(cuda, cuda ? 10 : 5, /*process_cpu_time=*/!cuda);
  char peak_note[256];
  std::snprintf(peak_note, sizeof(peak_note), "%.1f GFLOP per %s (%s %s, best of %d: %s)", peak.flops_per_s / 1e9,
                cuda ? "second" : "CPU-second", peak.dtype.c_str(), peak.device.c_str(), cuda ? 10 : 5,
                peak.measured.c_str());
  // On a known GPU, MFU also against the card's datasheet (dense bf16) peak.
  const trainer::DatasheetPeak sheet = cuda ? trainer::datasheet_bf16_peak(peak.device) : trainer::DatasheetPeak{};
  const char* unit = cuda ? "tok/s" : "tok/CPU-s";
  std::printf("device %s; GEMM peak %s; %s\n", peak.device.c_str(), peak_note,
              cuda ? (bf16 != "off" ? "bf16 autocast" : "float32") : "float32");
  if (sheet.flops_per_s > 0)
    std::printf(
        "datasheet peak %.1f TFLOPS (%s, dense bf16): MFU columns \"vs sheet\" count against it; measured "
        "GEMM peak / datasheet peak = %.2f\n",
        sheet.flops_per_s / 1e12, sheet.card.c_str(), peak.flops_per_s / sheet.flops_per_s);
  std::printf("model D=%ld H=%ld layers=%ld F=%ld V=%ld, CST L=%ld alpha=%.1f; %ld tokens per step\n\n",
              (long)base.d_model, (long)base.n_heads, (long)base.n_layers, (long)base.d_ff, (long)base.vocab_size,
              (long)base.slice_len, base.alpha, (long)tokens);
  // Columns per variant: CST per CSA kernel, full attention with explicit scores, and (--sdpa)
  // full attention through at::scaled_dot_product_attention. Ratios compare the last CST
  // variant (`ref`) with every other one.
  std::vector<std::pair<std::string, model::ModelConfig>> variants;
  {
    std::stringstream ss(csa_kernels);
    for (std::string k; std::getline(ss, k, ',');) {
      model::ModelConfig c = base;
      c.set("csa_kernel", k);
      variants.push_back({"CST " + k, c});
    }
    CST_INPUT_CHECK(!variants.empty(), "--csa-kernel: empty list");
  }
  const size_t ref = variants.size() - 1;
  model::ModelConfig full = base;
  full.arch = model::Arch::kFull;
  variants.push_back({"full", full});
  if (sdpa == "on" || (sdpa == "auto" && cuda)) {
    full.full_sdpa = true;
    variants.push_back({"full SDPA", full});
  }
  std::string head = "| N |", rule = "|---|";
  auto col = [&](const std::string& c) { head += " " + c + " |", rule += "---|"; };
  const std::string& rname = variants[ref].first;
  auto others = [&](auto&& fn) {
    for (size_t i = 0; i < variants.size(); ++i)
      if (i != ref) fn(i);
  };
  for (auto& v : variants) col(v.first + " " + unit);
  others([&](size_t i) { col(rname + " / " + variants[i].first + " speed"); });
  for (auto& v : variants) col(v.first + " peak MiB");
  others([&](size_t i) { col(variants[i].first + " / " + rname + " memory"); });
  for (auto& v : variants) col(v.first + " MFU");
  if (sheet.flops_per_s > 0)
    for (auto& v : variants) col(v.first + " MFU vs sheet");
  std::printf("%s\n%s\n", head.c_str(), rule.c_str());
  std::string profiles;
  for (int64_t n : ns) {
    std::vector<model::ModelConfig> cfgs;
    std::vector<bool> capped;
    for (auto& v : variants) {
      cfgs.push_back(v.second);
      capped.push_back(v.second.arch == model::Arch::kFull && !v.second.full_sdpa && n > max_full_n);
    }
    const std::vector<Result> r = run(dev, cfgs, capped, n, tokens, iters, peak.flops_per_s, profile_top);
    for (size_t i = 0; i < r.size(); ++i)
      if (!r[i].profile.empty())
        profiles += "\n" + variants[i].first + ", N = " + std::to_string(n) + ":\n\n" + r[i].profile;
    std::string row = "| " + std::to_string(n) + " |";
    auto add = [&](const std::string& c) { row += " " + c + " |"; };
    auto ratio = [&](const Result& x, const Result& y, double v) { return x.ran && y.ran ? cell(x, v, "%.2f") : ""; };
    for (auto& x : r) add(cell(x, x.tok_s, "%.0f"));
    others([&](size_t i) { add(ratio(r[ref], r[i], r[ref].tok_s / r[i].tok_s)); });
    for (auto& x : r) add(cell(x, x.peak_mib, "%.0f"));
    others([&](size_t i) { add(ratio(r[ref], r[i], r[i].peak_mib / r[ref].peak_mib)); });
    for (auto& x : r) add(cell(x, 100 * x.mfu, "%.1f%%"));
    if (sheet.flops_per_s > 0)
      for (auto& x : r) add(cell(x, 100 * x.mfu * peak.flops_per_s / sheet.flops_per_s, "%.1f%%"));
    std::printf("%s\n", row.c_str());
    std::fflush(stdout);
  }
  std::printf("%s", profiles.c_str());
  return 0;
} catch (...) {
  return cst::report_exception(std::current_exception());
}
