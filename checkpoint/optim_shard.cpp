#include "checkpoint/optim_shard.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "common/h5.h"

namespace cst::checkpoint {

void write_optim_shard(const std::string& path, const OptimShard& s) {
  auto lock = h5::lock_library();
  h5::File f(path, h5::File::Mode::kCreate);
  f.set_attr("format", std::string(kShardFormat));
  f.set_attr("format_version", kShardVersion);
  f.set_attr("rank", static_cast<int64_t>(s.rank));
  f.set_attr("world_size", static_cast<int64_t>(s.world));
  f.set_attr("range_begin", s.range.begin);
  f.set_attr("range_end", s.range.end);
  f.set_attr("flat_numel", s.flat_numel);
  f.set_attr("optimizer_steps", s.optimizer_steps);
  for (auto [name, t] : {std::pair{"exp_avg", &s.exp_avg}, std::pair{"exp_avg_sq", &s.exp_avg_sq}})
    if (s.range.size() > 0) f.write<float>(name, t->data_ptr<float>(), {s.range.size()});
  for (auto [name, t] : {std::pair{"rng_cpu", &s.rng_cpu}, std::pair{"rng_cuda", &s.rng_cuda}})
    if (t->defined()) f.write<uint8_t>(name, t->data_ptr<uint8_t>(), {t->numel()});
  f.flush();
}

void read_optimizer_state(const std::string& step_dir, const Manifest& m, OptimizerState& opt) {
  CST_INPUT_CHECK(m.flat_numel == opt.flat_numel(),
                  "checkpoint manifest '" << step_dir << "/manifest.json': flat_numel = " << m.flat_numel
                                          << " but the model has " << opt.flat_numel() << " trainable elements");
  const int world = static_cast<int>(m.world_size);  // in [1, kMaxWorldSize]: parse_manifest checked
  const FlatRange want = opt.held();
  at::Tensor avg = at::zeros({want.size()}, at::kFloat), avg_sq = at::zeros({want.size()}, at::kFloat);
  auto lock = h5::lock_library();
  for (int r = 0; r < world; ++r) {
    const FlatRange have = partition(m.flat_numel, r, world);
    const int64_t b = std::max(have.begin, want.begin), e = std::min(have.end, want.end);
    if (b >= e) continue;
    const std::string path = step_dir + "/" + shard_name(r, world);
    h5::File f(path, h5::File::Mode::kRead);
    CST_INPUT_CHECK(f.attr_int("range_begin") == have.begin && f.attr_int("range_end") == have.end,
                    "checkpoint shard '" << path
                                         << "': attributes range_begin/range_end = " << f.attr_int("range_begin") << "/"
                                         << f.attr_int("range_end") << ", expected " << have.begin << "/" << have.end);
    f.open("exp_avg").read_slab<float>({b - have.begin}, {e - b}, avg.data_ptr<float>() + (b - want.begin));
    f.open("exp_avg_sq").read_slab<float>({b - have.begin}, {e - b}, avg_sq.data_ptr<float>() + (b - want.begin));
  }
  opt.load_state(avg, avg_sq);
  opt.set_steps_taken(m.optimizer_steps);
}

std::pair<at::Tensor, at::Tensor> read_rng_state(const std::string& step_dir, const Manifest& m, int rank) {
  auto lock = h5::lock_library();
  const std::string path = step_dir + "/" + shard_name(rank, static_cast<int>(m.world_size));
  h5::File f(path, h5::File::Mode::kRead);
  std::pair<at::Tensor, at::Tensor> out;
  for (auto [name, dst] : {std::pair{"rng_cpu", &out.first}, std::pair{"rng_cuda", &out.second}}) {
    if (!f.has(name)) continue;
    h5::Dataset ds = f.open(name);
    CST_INPUT_CHECK(ds.numel() >= 0 && ds.numel() <= kMaxRngStateBytes,
                    "checkpoint shard '" << path << "': dataset " << name << " holds " << ds.numel()
                                         << " bytes, more than " << kMaxRngStateBytes);
    *dst = at::empty({ds.numel()}, at::kByte);
    ds.read<uint8_t>(dst->data_ptr<uint8_t>());
  }
  return out;
}

}  // namespace cst::checkpoint
