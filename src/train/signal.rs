//! Ctrl-C: the first press asks the running loop to save a checkpoint and stop; a second one
//! exits at once. SIGTERM (Slurm's `scancel` and time limit, `docker stop`) and SIGUSR1 do the
//! same. Data-parallel, a stop asked on any rank stops every rank at the same step. Under
//! `mpirun`, stop with `kill -USR1 <mpirun's pid>` (mpirun forwards SIGUSR1; Slurm:
//! `sbatch --signal=USR1@60`): Ctrl-C there reaches the ranks twice (from the terminal, then
//! mpirun's SIGTERM, then SIGKILL after a moment), which ends them at once; the last whole
//! checkpoint then resumes.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Installs the handler for SIGINT, SIGTERM and SIGUSR1.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: the handler only touches an atomic and calls _exit.
        unsafe {
            libc::signal(sig, on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t);
        }
    }
}

/// Whether a stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Asks the loop to stop, as Ctrl-C does.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}
