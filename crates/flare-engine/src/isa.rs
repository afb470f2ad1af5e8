//! Which SIMD instruction set the kernels use, decided once per process.
//!
//! Every kernel exists in three versions: AVX-512F, AVX2+FMA and portable scalar Rust. The best
//! one this CPU supports is detected on first use and cached in a `OnceLock`; the environment
//! variable `FLARE_ISA=scalar|avx2|avx512` lowers that choice (an unsupported or unknown value is
//! ignored, so a stale setting cannot crash a run). Code that must run a particular path (the
//! tests, which check each SIMD path against the scalar one) passes a [`Ctx`] built with
//! [`Ctx::with_isa`] instead of touching global state.
//!
//! A [`Ctx`] also carries the convolutions' [`Precision`]. [`Precision::Fp32`] (the default)
//! runs the kernels above, unchanged. [`Precision::Bf16`] rounds the convolutions' inputs and
//! weights to bfloat16 and multiplies them with fp32 accumulation, on a [`Bf16Kernel`]: the
//! native AVX512-BF16 one (`vdpbf16ps`) where the CPU has it, detected once and cached; where it
//! does not, [`Ctx::with_precision`] keeps fp32, so a CPU without bf16 runs exactly today's
//! kernels. The portable [`Bf16Kernel::Reference`] (plain Rust, fp32 arithmetic on
//! round-to-nearest-even bf16 values) runs on every CPU; it is the oracle the native kernel is
//! tested against, and slow.

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

/// The number format of the convolutions' multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Precision {
    /// fp32 inputs, weights and sums: today's kernels, the default.
    #[default]
    Fp32,
    /// Inputs and weights rounded to bfloat16 (round to nearest even), products summed in fp32
    /// (mixed precision: outputs, norms, losses and weight updates stay fp32).
    Bf16,
}

impl Precision {
    /// The lowercase name (`fp32`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Precision> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(Precision::Fp32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(EngineError::UnknownPrecision(s.to_string())),
        }
    }
}

/// The kernel that runs bf16 convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Bf16Kernel {
    /// Portable Rust: operands rounded to bf16 (round to nearest even, input denormals flushed
    /// to zero as the hardware conversion does), products and sums in fp32. Every CPU; slow;
    /// the reference the native kernel is tested against.
    Reference,
    /// x86-64 AVX512-BF16 (`vcvtne2ps2bf16`, `vdpbf16ps`: 32 bf16 multiply-adds per
    /// instruction into 16 fp32 sums).
    Avx512Bf16,
}

impl Bf16Kernel {
    /// Whether this CPU can run `self`.
    pub fn is_supported(self) -> bool {
        match self {
            Bf16Kernel::Reference => true,
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Avx512Bf16 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bf16")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The native (hardware) bf16 kernel this CPU has, if any; detected once and cached.
    pub fn native() -> Option<Bf16Kernel> {
        static NATIVE: OnceLock<Option<Bf16Kernel>> = OnceLock::new();
        *NATIVE.get_or_init(|| Some(Bf16Kernel::Avx512Bf16).filter(|k| k.is_supported()))
    }

    /// The lowercase name (`reference`, `avx512bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Reference => "reference",
            Bf16Kernel::Avx512Bf16 => "avx512bf16",
        }
    }
}

impl fmt::Display for Bf16Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How operations run: which instruction set the kernels use, and in which precision the
/// convolutions multiply. Threads come from the current rayon pool (run inside
/// `ThreadPool::install` to pin a count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    isa: Isa,
    /// `None`: fp32 convolutions; `Some(k)`: bf16 convolutions on `k`.
    bf16: Option<Bf16Kernel>,
}

impl Ctx {
    /// The process-wide choice ([`Isa::active`]), fp32.
    pub fn new() -> Ctx {
        Ctx {
            isa: Isa::active(),
            bf16: None,
        }
    }

    /// A context that runs exactly `isa` (fp32), or an error if this CPU cannot.
    pub fn with_isa(isa: Isa) -> Result<Ctx> {
        if isa.is_supported() {
            Ok(Ctx { isa, bf16: None })
        } else {
            Err(EngineError::UnsupportedIsa(isa))
        }
    }

    /// This context with convolutions in `precision`: for [`Precision::Bf16`] on the native
    /// bf16 kernel ([`Bf16Kernel::native`]); where the CPU has none, the context stays fp32
    /// (check [`Ctx::precision`] to tell the user).
    pub fn with_precision(self, precision: Precision) -> Ctx {
        let bf16 = match precision {
            Precision::Fp32 => None,
            Precision::Bf16 => Bf16Kernel::native(),
        };
        Ctx { bf16, ..self }
    }

    /// This context with bf16 convolutions on exactly `kernel`, or an error if this CPU cannot
    /// run it (the tests force each kernel this way).
    pub fn with_bf16_kernel(self, kernel: Bf16Kernel) -> Result<Ctx> {
        if kernel.is_supported() {
            Ok(Ctx {
                bf16: Some(kernel),
                ..self
            })
        } else {
            Err(EngineError::UnsupportedBf16(kernel))
        }
    }

    /// The instruction set this context runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The precision the convolutions multiply in.
    pub fn precision(&self) -> Precision {
        match self.bf16 {
            None => Precision::Fp32,
            Some(_) => Precision::Bf16,
        }
    }

    /// The bf16 kernel, when the convolutions run in bf16.
    pub fn bf16_kernel(&self) -> Option<Bf16Kernel> {
        self.bf16
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

    #[test]
    fn precision_defaults_to_fp32_and_bf16_needs_a_kernel() {
        assert_eq!(Ctx::new().precision(), Precision::Fp32);
        assert_eq!(Ctx::new().bf16_kernel(), None);
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("fp32".parse::<Precision>().unwrap(), Precision::Fp32);
        assert!("fp16".parse::<Precision>().is_err());
        let reference = Ctx::new().with_bf16_kernel(Bf16Kernel::Reference).unwrap();
        assert_eq!(reference.precision(), Precision::Bf16);
        let asked = Ctx::new().with_precision(Precision::Bf16);
        match Bf16Kernel::native() {
            Some(k) => assert_eq!(asked.bf16_kernel(), Some(k)),
            None => assert_eq!(asked.precision(), Precision::Fp32),
        }
        assert_eq!(asked.with_precision(Precision::Fp32), Ctx::new());
    }
}
