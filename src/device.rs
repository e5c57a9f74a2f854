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

/// The error of a CPU-only binary asked for CUDA.
fn without_cuda(ordinal: usize) -> Error {
    Error::invalid(
        "device",
        format!("cuda:{ordinal} asked for, but this ssl was built without CUDA (rebuild with `cargo build --release --features cuda`, see scripts/setup_cuda.sh)"),
    )
}

/// The CUDA device `ordinal`, its random numbers drawn from `seed`. cudarc 0.9 panics (it
/// unwraps) when the driver cannot start or the GPU does not exist; that becomes an error here,
/// with the default panic message silenced meanwhile. The panic hook is process-wide, so calls
/// take turns: two overlapping swaps could otherwise restore the silent hook for good.
#[cfg(feature = "cuda")]
pub fn cuda(ordinal: usize, seed: u64) -> Result<dfdx::tensor::Cuda> {
    static HOOK_SWAP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = HOOK_SWAP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let built = std::panic::catch_unwind(|| dfdx::tensor::Cuda::try_build(ordinal, seed));
    std::panic::set_hook(hook);
    let why = match built {
        Ok(Ok(dev)) => return Ok(dev),
        Ok(Err(e)) => e.to_string(),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the CUDA driver failed".into()),
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

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_cpu_build_refuses_cuda_clearly() {
        let e = DeviceSpec::Cuda(0).check().unwrap_err().to_string();
        assert!(e.contains("built without CUDA"), "{e}");
        assert!(DeviceSpec::Cpu.check().is_ok());
    }
}
