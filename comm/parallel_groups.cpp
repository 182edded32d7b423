#include "comm/parallel_groups.h"

#include "common/error.h"

namespace cst::comm {

ParallelGroups ParallelGroups::make(const ParallelLayout& layout, Communicator& world) {
  CST_CHECK(world.size() == layout.world_size() && world.rank() == layout.rank(),
            "the layout of rank " << layout.rank() << " of " << layout.world_size()
                                  << " does not fit communicator rank " << world.rank() << " of " << world.size());
  ParallelGroups g;
  g.layout = layout;
  g.world = &world;
  // One group per data-parallel replica, ordered by the position each rank holds in the sequence.
  if (layout.seq_parallel()) g.seq = world.split(layout.dp_rank(), layout.sp_rank());
  return g;
}

}  // namespace cst::comm
