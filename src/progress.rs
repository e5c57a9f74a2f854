//! Progress bars on standard error; hidden when it is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps with a message.
pub fn bar(len: u64, msg: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(msg.to_string());
    bar
}
