// cst-train: data-parallel training of a CST (or baseline) model on HDF5 shards.
//
//   mpirun -np W cst-train --config configs/tiny_lm.cfg [--group.key value ...]
//   srun cst-train --config ...            (or one plain process)
//
// Options come from the .cfg file ([group] sections, docs in --help), then the command line on
// top. Unknown keys or bad values: exit 2 naming key and value. An error on any rank is logged
// with its rank and host and ends every rank (MPI_Abort) with a non-zero exit code: 2 for bad
// input (including a checkpoint that cannot be resumed), 1 for other failures, 3 for a
// collective that timed out (the watchdog). SIGTERM, SIGUSR1 or SIGINT: every rank saves a
// checkpoint at the next step boundary and exits 128 + signal (143, 138, 130; the largest when
// ranks got different ones). docs/CHECKPOINT.md.
#include <cstdio>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/factory.h"
#include "comm/mpi.h"
#include "common/error.h"
#include "common/output_guard.h"
#include "launcher/train_options.h"
#include "trainer/init_weights.h"
#include "trainer/preemption.h"
#include "trainer/trainer.h"
#include "trainer/watchdog.h"

using namespace cst;

namespace {

const char* kHelpEpilogue =
    "\nExit codes: 0 done; 1 failure; 2 bad input (options, data, a checkpoint that cannot be resumed); 3 collective "
    "timeout;\n128 + signal after SIGTERM (143), SIGUSR1 (138) or SIGINT (130): a checkpoint was saved at the next "
    "step boundary\n(resume with --resume auto). See docs/CHECKPOINT.md.\n";

}  // namespace

int main(int argc, char** argv) {
  comm::MpiEnvironment mpi(argc, argv);
  trainer::install_preemption_handlers();  // after MPI_Init: ours, not the MPI library's
  const int rank = mpi.rank();
  int code = 0;
  std::string what;
  try {
    trainer::TrainConfig cfg;
    std::set<std::string> explicit_keys;
    if (!launcher::parse_train_options(std::vector<std::string>(argv, argv + argc), cfg,
                                       rank == 0 ? &std::cout : nullptr, kHelpEpilogue, &explicit_keys))
      return 0;
    trainer::adopt_init_config(cfg, explicit_keys);  // init.weights: the model shape of the source
    cfg.validate(mpi.size());
    // Output folders that cannot be made fail here, with exit 2 naming them, not mid-run.
    check_folder_usable({"log.dir", cfg.log.dir});
    check_folder_usable({"checkpoint.dir", cfg.checkpoint.resolved_dir(cfg.log.dir)});
    if (rank == 0) std::printf("# resolved configuration (%d rank(s))\n%s\n", mpi.size(), cfg.to_string().c_str());
    trainer::ProcessInfo proc = trainer::ProcessInfo::from_environment(rank, mpi.size(), mpi.host());
    const trainer::Execution ex = trainer::setup_execution(cfg, proc);  // before NCCL binds the device
    std::unique_ptr<comm::Communicator> comm = comm::make_communicator(&mpi, cfg.dist.backend, cfg.dist.comm_timeout_s);
    trainer::Watchdog watchdog(cfg.dist.comm_timeout_s, [&](const std::string& msg) {
      std::fprintf(stderr, "[rank %d %s] error: %s; aborting the job\n", rank, mpi.host().c_str(), msg.c_str());
      std::fflush(stderr);
      mpi.abort(3);
    });
    trainer::Trainer t(cfg, *comm, proc, ex, &watchdog);
    trainer::TrainResult r = t.run();
    if (rank == 0 && r.preempted_signal == 0)
      std::printf("done: %ld steps, final train loss %.4f%s\n", (long)r.steps, r.final_train_loss,
                  r.final_eval_loss >= 0 ? (", validation loss " + std::to_string(r.final_eval_loss)).c_str() : "");
    comm->barrier();
    if (r.preempted_signal > 0) {
      if (rank == 0) std::printf("preempted by signal %d: exit %d\n", r.preempted_signal, 128 + r.preempted_signal);
      std::fflush(stdout);
      return 128 + r.preempted_signal;
    }
    return 0;
  } catch (const InputError& e) {
    code = 2, what = e.what();
  } catch (const comm::CommTimeout& e) {
    code = 3, what = e.what();
  } catch (const std::exception& e) {
    code = 1, what = e.what();
  }
  std::fprintf(stderr, "[rank %d %s] error: %s\n", rank, mpi.host().c_str(), what.c_str());
  std::fflush(stderr);
  if (mpi.size() > 1) mpi.abort(code);  // end every rank: no peer may hang in a collective
  return code;
}
