//! How the library reports what it is doing without printing anything itself: progress bars and
//! one-line messages go to whatever the program installed with [`set_reporter`] (the `ssl`
//! binary: standard output for messages, bars on standard error when it is a terminal). A
//! program that installs nothing gets hidden bars and no messages.

use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressStyle};

/// Where messages go, and whether bars are drawn.
pub struct Reporter {
    pub message: Box<dyn Fn(&str) + Send + Sync>,
    pub bars: bool,
}

static REPORTER: OnceLock<Reporter> = OnceLock::new();

/// Installs the program's reporter (once; later calls are ignored).
pub fn set_reporter(r: Reporter) {
    let _ = REPORTER.set(r);
}

/// Sends one line (e.g. an epoch's summary) to the reporter, if any.
pub fn message(line: &str) {
    if let Some(r) = REPORTER.get() {
        (r.message)(line);
    }
}

/// A bar of `len` steps with a message; hidden unless the reporter draws bars.
pub fn bar(len: u64, msg: &str) -> ProgressBar {
    if !REPORTER.get().is_some_and(|r| r.bars) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(msg.to_string());
    bar
}
