//! The instruction sets the process uses: the GEMM's kernels ([`kernels`]) and run-time
//! dispatch for the project's own loops (augmentation; batch norm, ReLU, im2col, col2im).
//! Everything is built for x86-64-v3 (AVX2, `.cargo/config.toml`), so without this the loops
//! would not use AVX-512 where the CPU has it.
//!
//! [`run`] calls a closure from a function compiled with AVX-512 (F, BW, VL) or AVX2 + FMA
//! enabled, the widest the CPU has, so the closure's loops (inlined into it) use those vectors.
//! `SSL_CPU_ISA=avx2` caps it at AVX2, as it does the GEMM ([`kernels`]).
//!
//! The results do not depend on the level: Rust never contracts `a * b + c` into an FMA, and
//! no float reduction is reordered by the compiler, so every level computes the same
//! operations in the same order, bit for bit (tested below); only the vector width changes.

use std::sync::OnceLock;

/// Which GEMM kernels the products take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// The widest the CPU has (gemm's run-time choice).
    Native,
    /// gemm's AVX2 (FMA) kernels, whatever the CPU has beyond them.
    Avx2,
}

/// The kernels of this process: [`Kernels::Avx2`] when the environment has `SSL_CPU_ISA=avx2`
/// (read once), else [`Kernels::Native`] (also for a value [`kernels_asked`] refuses).
pub fn kernels() -> Kernels {
    static CHOSEN: OnceLock<Kernels> = OnceLock::new();
    *CHOSEN.get_or_init(|| kernels_asked().unwrap_or(Kernels::Native))
}

/// What `SSL_CPU_ISA` asks for: `avx2`, `native`, or unset or empty (any case).
///
/// # Errors
/// Any other value, or `avx2` on a CPU without gemm's AVX2 kernels ([`avx2_kernels_run_here`]).
pub fn kernels_asked() -> crate::error::Result<Kernels> {
    let bad = |why: String| crate::error::Error::invalid("SSL_CPU_ISA", why);
    match std::env::var("SSL_CPU_ISA") {
        Err(std::env::VarError::NotPresent) => Ok(Kernels::Native),
        Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("native") => Ok(Kernels::Native),
        Ok(v) if v.eq_ignore_ascii_case("avx2") => match avx2_kernels_run_here() {
            true => Ok(Kernels::Avx2),
            false => Err(bad("avx2 asked for, but this CPU lacks what gemm's AVX2 kernels need (AVX2, FMA, F16C)".into())),
        },
        Ok(v) => Err(bad(format!("'{v}' is not one of avx2, native"))),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Whether gemm's AVX2 kernels can run on this CPU: the same check gemm makes before it uses
/// them (its `V3` instruction set: AVX2, FMA and F16C among others).
pub fn avx2_kernels_run_here() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        <gemm_common::simd::V3 as gemm_common::simd::MixedSimd<f32, f32, f32, f32>>::try_new().is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The instruction sets [`run`] compiles for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// AVX-512 F, BW and VL (with AVX2 and FMA).
    Avx512,
    /// AVX2 and FMA.
    Avx2,
    /// What the binary was built for.
    Baseline,
}

/// The level of this process: the widest the CPU has, at most AVX2 under `SSL_CPU_ISA=avx2`.
pub fn level() -> Level {
    within(match kernels() {
        Kernels::Avx2 => Level::Avx2,
        Kernels::Native => Level::Avx512,
    })
}

/// `at`, or the widest level below it that this CPU runs.
pub fn within(at: Level) -> Level {
    match (at, detect()) {
        (Level::Avx512, widest) => widest,
        (Level::Avx2, Level::Avx512 | Level::Avx2) => Level::Avx2,
        _ => Level::Baseline,
    }
}

/// The levels this CPU runs, widest first (tests compare them).
pub fn available() -> Vec<Level> {
    [Level::Avx512, Level::Avx2, Level::Baseline].into_iter().filter(|&l| within(l) == l).collect()
}

/// The widest level the CPU runs (detected once: [`within`] is asked in the kernels' loops).
fn detect() -> Level {
    static WIDEST: OnceLock<Level> = OnceLock::new();
    *WIDEST.get_or_init(detect_now)
}

fn detect_now() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
        {
            return Level::Avx512;
        }
        if avx2 {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// Runs `f` compiled for this process's [`level`]. Mark the closure `#[inline(always)]` and
/// keep its loops in it as plain `for` loops (or in `#[inline(always)]` functions): code it
/// calls without inlining, such as an iterator adapter's `fold` behind `collect` or
/// `for_each`, is compiled for the baseline.
#[inline(always)]
pub fn run<R>(f: impl FnOnce() -> R) -> R {
    run_at(level(), f)
}

/// [`run`] at a given level (tests compare levels with it), or at the widest below it that
/// the CPU runs ([`within`]).
#[inline(always)]
pub fn run_at<R>(at: Level, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match within(at) {
            // SAFETY: `detect` found the features.
            Level::Avx512 => return unsafe { avx512(f) },
            Level::Avx2 => return unsafe { avx2(f) },
            Level::Baseline => {}
        }
    }
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element-wise and reduction work of the kind the kernels do, at one level, in plain
    /// loops (what `run` compiles at the level).
    fn work(at: Level, x: &[f32]) -> (Vec<f32>, f64) {
        let mut y = vec![0.0f32; x.len()];
        let mut lanes = [0.0f64; 8];
        run_at(
            at,
            #[inline(always)]
            || {
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = (v * 1.7 + 0.3).max(0.0) / (v * v + 1.0).sqrt();
                }
                for c in y.chunks_exact(8) {
                    for j in 0..8 {
                        lanes[j] += c[j] as f64 * c[j] as f64;
                    }
                }
            },
        );
        let mut sum = 0.0;
        for l in lanes {
            sum += l;
        }
        (y, sum)
    }

    #[test]
    fn every_level_gives_the_same_bits() {
        let x: Vec<f32> = (0..10_000)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 37.0)
            .collect();
        let (y0, s0) = work(Level::Baseline, &x);
        for at in [Level::Avx2, Level::Avx512] {
            let (y, s) = work(at, &x);
            assert!(
                y.iter().zip(&y0).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{at:?}"
            );
            assert_eq!(s.to_bits(), s0.to_bits(), "{at:?}");
        }
        // The process's level is one the CPU runs, and SSL_CPU_ISA=avx2 caps it.
        assert_eq!(within(level()), level());
        if kernels() == Kernels::Avx2 {
            assert_ne!(level(), Level::Avx512);
        }
    }
}
