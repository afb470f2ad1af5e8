//! Which SIMD instruction set the kernels use, decided once per process.
//!
//! Every kernel exists in three versions: AVX-512F, AVX2+FMA and portable scalar Rust. The best
//! one this CPU supports is detected on first use and cached in a `OnceLock`; the environment
//! variable `FLARE_ISA=scalar|avx2|avx512` lowers that choice (an unsupported or unknown value is
//! ignored, so a stale setting cannot crash a run). Code that must run a particular path (the
//! tests, which check each SIMD path against the scalar one) passes a [`Ctx`] built with
//! [`Ctx::with_isa`] instead of touching global state.

use std::{fmt, str::FromStr, sync::OnceLock};

use crate::{EngineError, Result};

/// A SIMD instruction set a kernel can be built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Isa {
    /// Portable Rust, no explicit SIMD: correct on every CPU.
    Scalar,
    /// x86-64 AVX2 with FMA (256-bit vectors).
    Avx2,
    /// x86-64 AVX-512F (512-bit vectors).
    Avx512,
}

impl Isa {
    /// All instruction sets, slowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// Whether this CPU can run kernels built for `self`.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The instruction sets this CPU supports, slowest first (always starts with `Scalar`).
    pub fn supported() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_supported()).collect()
    }

    /// The fastest supported instruction set.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|i| i.is_supported())
            .unwrap_or(Isa::Scalar)
    }

    /// The instruction set `FLARE_ISA` asks for: `Ok(None)` when unset, an error when unknown
    /// or unsupported (for front ends that want to report a bad setting).
    pub fn from_env() -> Result<Option<Isa>> {
        match std::env::var("FLARE_ISA") {
            Ok(v) if !v.trim().is_empty() => {
                let isa: Isa = v.parse()?;
                if isa.is_supported() {
                    Ok(Some(isa))
                } else {
                    Err(EngineError::UnsupportedIsa(isa))
                }
            }
            _ => Ok(None),
        }
    }

    /// The process-wide choice: `FLARE_ISA` if set and usable, else [`Isa::best`]. Decided on
    /// first call and cached.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| Isa::from_env().ok().flatten().unwrap_or_else(Isa::best))
    }

    /// The lowercase name (`scalar`, `avx2`, `avx512`), as `FLARE_ISA` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "portable" => Ok(Isa::Scalar),
            "avx2" | "fma" => Ok(Isa::Avx2),
            "avx512" | "avx512f" => Ok(Isa::Avx512),
            _ => Err(EngineError::UnknownIsa(s.to_string())),
        }
    }
}

/// How operations run: which instruction set the kernels use. Threads come from the current
/// rayon pool (run inside `ThreadPool::install` to pin a count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    isa: Isa,
}

impl Ctx {
    /// The process-wide choice ([`Isa::active`]).
    pub fn new() -> Ctx {
        Ctx { isa: Isa::active() }
    }

    /// A context that runs exactly `isa`, or an error if this CPU cannot.
    pub fn with_isa(isa: Isa) -> Result<Ctx> {
        if isa.is_supported() {
            Ok(Ctx { isa })
        } else {
            Err(EngineError::UnsupportedIsa(isa))
        }
    }

    /// The instruction set this context runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }
}

impl Default for Ctx {
    fn default() -> Ctx {
        Ctx::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for isa in Isa::ALL {
            assert_eq!(isa.name().parse::<Isa>().unwrap(), isa);
        }
        assert!(matches!(
            "neon".parse::<Isa>(),
            Err(EngineError::UnknownIsa(_))
        ));
    }

    #[test]
    fn scalar_is_always_supported() {
        assert!(Isa::Scalar.is_supported());
        assert_eq!(Isa::supported()[0], Isa::Scalar);
        assert!(Isa::best().is_supported());
        assert!(Isa::active().is_supported());
        assert_eq!(Ctx::with_isa(Isa::Scalar).unwrap().isa(), Isa::Scalar);
    }
}
