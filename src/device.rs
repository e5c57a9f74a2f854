//! Where a model runs: `cpu` or `cuda[:N]`, as written in recipes (`device: "cuda:0"`) and on
//! the command line (`--device cuda`). CUDA needs a binary built with the `cuda` feature; a
//! CPU-only binary refuses it with one clear error before any work starts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A compute device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The CPU, with rayon threads (`--threads`).
    #[default]
    Cpu,
    /// NVIDIA GPU number N (ordinal as CUDA counts them).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid("device", format!("'{s}' is not a device (cpu, cuda or cuda:N)"));
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceSpec::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Checks that this binary can run on the device, without opening it: a GPU that does not
    /// answer is reported by [`cuda`] when the network is built, before a run writes anything.
    pub fn check(self) -> Result<()> {
        match self {
            DeviceSpec::Cuda(n) if !cfg!(feature = "cuda") => Err(without_cuda(n)),
            _ => Ok(()),
        }
    }
}

/// Runs `f`, work on `device`. On a GPU, a panic inside it becomes
/// `Error::device(what, message)` and prints nothing itself: cudarc and dfdx unwrap the CUDA
/// driver's errors (out of memory, a failed kernel, a lost device) where their APIs return no
/// `Result`, and the user should see one line while the files already written (the last
/// checkpoint) stay as they were. On the CPU a panic is a defect of ssl and stays a panic.
pub fn guarded<T>(device: DeviceSpec, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match device {
        DeviceSpec::Cpu => f(),
        DeviceSpec::Cuda(_) => catch_quietly(f).unwrap_or_else(|why| Err(Error::Device { during: what.into(), reason: why })),
    }
}

thread_local! {
    /// Whether a panic on this thread is being caught by [`catch_quietly`].
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// What the hook saw of the last panic caught quietly: its message and where it was raised.
    static CAUGHT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f`, turning a panic into its message and location, which the panic hook does not
/// print (unless `RUST_BACKTRACE` is set: then the usual report too, for a defect of ssl behind
/// the failure). The hook is installed once for the process and passes every other thread's
/// panics (and this thread's outside `f`) to the hook it replaced.
fn catch_quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(|q| q.get()) {
                CAUGHT.with(|c| *c.borrow_mut() = Some(info.to_string().replace('\n', " ")));
                if std::env::var_os("RUST_BACKTRACE").is_none_or(|v| v == "0") {
                    return;
                }
            }
            previous(info);
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    out.map_err(|_| CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_else(|| "the device failed".into()))
}

/// The error of a CPU-only binary asked for CUDA.
fn without_cuda(ordinal: usize) -> Error {
    Error::invalid(
        "device",
        format!("cuda:{ordinal} asked for, but this ssl was built without CUDA (rebuild with `cargo build --release --features cuda`, see scripts/setup_cuda.sh)"),
    )
}

/// The CUDA device `ordinal`, its random numbers drawn from `seed`. cudarc 0.9 panics (it
/// unwraps) when the driver cannot start or the GPU does not exist; that becomes an error here,
/// the panic's message unprinted.
#[cfg(feature = "cuda")]
pub fn cuda(ordinal: usize, seed: u64) -> Result<dfdx::tensor::Cuda> {
    let why = match catch_quietly(|| dfdx::tensor::Cuda::try_build(ordinal, seed)) {
        Ok(Ok(dev)) => return Ok(dev),
        Ok(Err(e)) => e.to_string(),
        Err(why) => why,
    };
    Err(Error::invalid("device", format!("cuda:{ordinal} is not usable: {why}")))
}

/// Without the `cuda` feature: the error a user sees.
#[cfg(not(feature = "cuda"))]
pub fn cuda(ordinal: usize, _seed: u64) -> Result<std::convert::Infallible> {
    Err(without_cuda(ordinal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
        for bad in ["tpu", "cuda:", "cuda:x", "cuda:-1"] {
            assert!(bad.parse::<DeviceSpec>().unwrap_err().to_string().contains("not a device"), "{bad}");
        }
        let r: DeviceSpec = ron::from_str("\"cuda:1\"").unwrap();
        assert_eq!(r, DeviceSpec::Cuda(1));
        assert_eq!(ron::to_string(&DeviceSpec::Cpu).unwrap(), "\"cpu\"");
    }

    /// On a GPU a panic in the work (a CUDA error cudarc unwrapped) is an error naming the
    /// work; on the CPU the work's own errors pass through.
    #[test]
    fn a_panic_of_gpu_work_is_an_error() {
        let e = guarded(DeviceSpec::Cuda(0), "a SimCLR step", || -> Result<()> { panic!("DriverError(CUDA_ERROR_OUT_OF_MEMORY)") }).unwrap_err().to_string();
        assert!(e.contains("a SimCLR step") && e.contains("CUDA_ERROR_OUT_OF_MEMORY") && e.contains("src/device.rs"), "message and place: {e}");
        assert!(!QUIET.with(|q| q.get()), "quiet only inside the guard, also after a panic");
        // Nested: the inner failure is the inner guard's, the outer work goes on.
        let out = guarded(DeviceSpec::Cuda(0), "outer", || {
            let inner = guarded(DeviceSpec::Cuda(0), "inner", || -> Result<()> { panic!("kernel failed") });
            assert!(QUIET.with(|q| q.get()), "still inside the outer guard");
            Ok(inner.unwrap_err().to_string())
        });
        assert!(out.unwrap().contains("inner"));
        assert_eq!(guarded(DeviceSpec::Cuda(0), "work", || Ok(3)).unwrap(), 3);
        let e = guarded(DeviceSpec::Cpu, "work", || -> Result<()> { Err(Error::invalid("x", "y")) }).unwrap_err();
        assert!(e.to_string().contains('y'));
        // On the CPU a panic is a defect and stays a panic.
        assert!(std::panic::catch_unwind(|| guarded(DeviceSpec::Cpu, "work", || -> Result<()> { panic!("a defect") })).is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_cpu_build_refuses_cuda_clearly() {
        let e = DeviceSpec::Cuda(0).check().unwrap_err().to_string();
        assert!(e.contains("built without CUDA"), "{e}");
        assert!(DeviceSpec::Cpu.check().is_ok());
    }
}
