// The communicators of a ParallelLayout (common/parallel_layout.h): the world, which reduces
// gradients, losses and counts over all W ranks, and, under sequence parallelism, the group of
// the S ranks that hold this rank's sequences (ranked by sequence-parallel rank, so that rank r
// of the group holds layout.token_range's part).
#pragma once

#include <memory>

#include "comm/communicator.h"
#include "common/parallel_layout.h"

namespace cst::comm {

struct ParallelGroups {
  ParallelLayout layout;
  Communicator* world = nullptr;      // not owned; of layout.world_size() ranks
  std::unique_ptr<Communicator> seq;  // the S ranks of this rank's sequences; null when S = 1

  // Collective over world (every rank calls it with its own layout of the same spec): splits it
  // into the layout's sequence-parallel groups of consecutive ranks. world must outlive the result.
  static ParallelGroups make(const ParallelLayout& layout, Communicator& world);
};

}  // namespace cst::comm
