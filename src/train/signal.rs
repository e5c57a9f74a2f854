//! Ctrl-C: the first press asks the running loop to save a checkpoint and stop; a second one
//! exits at once. SIGUSR1 does the same, and on one process SIGTERM too (Slurm's `scancel` and
//! time limit, `docker stop`). Data-parallel, a stop asked on any rank stops every rank at the
//! same step: under `mpirun`, `kill -USR1 <mpirun's pid>` (mpirun forwards SIGUSR1; Slurm:
//! `sbatch --signal=USR1@60`). There SIGTERM keeps its default and ends the rank at once: it is
//! how `MPI_Abort` and mpirun end a job whose rank failed (a rank that caught it would wait in a
//! collective for a rank that is gone). Ctrl-C under mpirun therefore ends the ranks at once,
//! and the last whole checkpoint resumes.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Installs the handler for SIGINT and SIGUSR1, and SIGTERM on one process.
pub fn install() {
    let alone = crate::dist::rank_and_size().1 == 1;
    let signals: &[libc::c_int] = if alone { &[libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] } else { &[libc::SIGINT, libc::SIGUSR1] };
    for &sig in signals {
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
