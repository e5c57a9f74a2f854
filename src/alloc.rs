//! The memory allocator of the `ssl` binary, benches and examples.
//!
//! A training step allocates and frees the same few hundred megabytes of tensors again and
//! again. The system allocator hands large blocks back to the kernel, which then zeroes fresh
//! pages on every step; mimalloc told never to purge keeps them (measured: a third more
//! SimCLR steps per second on the small ResNet).
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: ssl::alloc::Allocator = ssl::alloc::Allocator {};
//! fn main() { ssl::alloc::keep_freed_memory(); }
//! ```

/// The allocator type to install with `#[global_allocator]`.
pub type Allocator = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's option enum.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc to keep freed memory for reuse instead of returning it to the kernel.
pub fn keep_freed_memory() {
    // SAFETY: setting an option is thread-safe and takes effect for later frees.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// The process's peak resident memory in MiB (`VmHWM` of `/proc/self/status`; NaN where that
/// cannot be read), for the throughput examples.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
