//! Errors the engine reports for shapes and settings it cannot run.

use crate::{Bf16Kernel, Isa};

/// Why an engine operation refused its inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A data buffer does not hold exactly as many elements as its shape says.
    #[error("{what}: buffer holds {len} values but shape {shape} needs {expected}")]
    DataLength {
        /// What the buffer is (a tensor, a weight).
        what: &'static str,
        /// The shape, as text.
        shape: String,
        /// Elements the shape needs.
        expected: usize,
        /// Elements the buffer holds.
        len: usize,
    },
    /// Operand shapes do not fit the operation.
    #[error("{op}: {detail}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// What does not fit, with the numbers.
        detail: String,
    },
    /// A parameter (kernel size, stride, padding) the operation does not support.
    #[error("{op}: {detail}")]
    Param {
        /// The operation.
        op: &'static str,
        /// Which parameter, and why.
        detail: String,
    },
    /// A SIMD instruction set was requested that this CPU (or build) cannot run.
    #[error("instruction set {0} is not supported on this CPU")]
    UnsupportedIsa(Isa),
    /// `FLARE_ISA` (or a parsed name) is not one of `scalar`, `avx2`, `avx512`.
    #[error("unknown instruction set {0:?} (expected scalar, avx2 or avx512)")]
    UnknownIsa(String),
    /// A bf16 kernel was requested that this CPU (or build) cannot run.
    #[error("bf16 kernel {0} is not supported on this CPU")]
    UnsupportedBf16(Bf16Kernel),
    /// A parsed precision name is not one of `fp32`, `bf16`.
    #[error("unknown precision {0:?} (expected fp32 or bf16)")]
    UnknownPrecision(String),
}

/// Shorthand for results of engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
