// Preemption signals. SIGTERM (schedulers' "time is up"), SIGUSR1 (SLURM --signal=USR1@T) and
// SIGINT (Ctrl-C) only set a flag here; the training loop polls it at every step boundary, all
// ranks agree (all_reduce max), save a checkpoint synchronously and exit with 128 + signal
// (the largest signal number when ranks received different ones). docs/CHECKPOINT.md.
//
// The flag is process-wide by nature (a signal handler can reach nothing else); it is the one
// piece of global state of the trainer, written only by the async-signal-safe handler.
#pragma once

namespace cst::trainer {

// Installs the handlers for SIGTERM, SIGUSR1 and SIGINT (sigaction, SA_RESTART). Idempotent.
void install_preemption_handlers();
// The largest preemption signal number received so far (0 = none).
int pending_signal();
// Tests: forget received signals.
void clear_pending_signal();

}  // namespace cst::trainer
