//! Shape math for every operation, in one place: output sizes, parameter checks.
//!
//! Sizes follow PyTorch's conventions exactly (floor division, zero padding on both sides), so
//! a network described with PyTorch's numbers has the same shapes here.

use crate::{EngineError, Result, Shape5};

/// Kernel, stride and zero padding of a 3D convolution, per axis in `[d, h, w]` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv3dSpec {
    /// Kernel extent `[kd, kh, kw]`, each at least 1.
    pub kernel: [usize; 3],
    /// Stride `[sd, sh, sw]`, each at least 1.
    pub stride: [usize; 3],
    /// Zero padding added on both sides `[pd, ph, pw]`.
    pub padding: [usize; 3],
}

impl Conv3dSpec {
    /// A checked spec: kernel and stride must be at least 1, padding smaller than the kernel
    /// (a larger padding only adds outputs that see nothing but zeros).
    pub fn new(kernel: [usize; 3], stride: [usize; 3], padding: [usize; 3]) -> Result<Conv3dSpec> {
        let spec = Conv3dSpec {
            kernel,
            stride,
            padding,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Stride 1 with "same" padding (`k / 2`): output grid equals the input grid for odd kernels.
    pub fn same(kernel: [usize; 3]) -> Result<Conv3dSpec> {
        Conv3dSpec::new(kernel, [1; 3], kernel.map(|k| k / 2))
    }

    /// Checks the invariants [`Conv3dSpec::new`] enforces (fields are public, so ops re-check).
    pub fn validate(&self) -> Result<()> {
        for axis in 0..3 {
            let (k, s, p) = (self.kernel[axis], self.stride[axis], self.padding[axis]);
            if k == 0 || s == 0 || p >= k {
                return Err(EngineError::Param {
                    op: "conv3d",
                    detail: format!(
                        "axis {axis}: kernel {k}, stride {s}, padding {p} (need kernel >= 1, \
                         stride >= 1, padding < kernel)"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Number of kernel taps (`kd * kh * kw`).
    pub fn taps(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Output spatial size for an input spatial size `[d, h, w]`.
    pub fn output_spatial(&self, input: [usize; 3]) -> Result<[usize; 3]> {
        self.validate()?;
        let mut out = [0; 3];
        for axis in 0..3 {
            let padded = input[axis] + 2 * self.padding[axis];
            if padded < self.kernel[axis] {
                return Err(EngineError::Shape {
                    op: "conv3d",
                    detail: format!(
                        "axis {axis}: input {} + padding 2x{} is smaller than kernel {}",
                        input[axis], self.padding[axis], self.kernel[axis]
                    ),
                });
            }
            out[axis] = (padded - self.kernel[axis]) / self.stride[axis] + 1;
        }
        Ok(out)
    }

    /// Output shape for `input` and `cout` output channels.
    pub fn output_shape(&self, input: Shape5, cout: usize) -> Result<Shape5> {
        let [d, h, w] = self.output_spatial(input.spatial())?;
        Ok(Shape5::new(input.n, d, h, w, cout))
    }

    /// Multiply-adds of one forward pass over `input` with `cout` output channels, times two
    /// (the FLOP count benchmarks report).
    pub fn flops(&self, input: Shape5, cout: usize) -> Result<f64> {
        let out = self.output_shape(input, cout)?;
        Ok(2.0 * out.len() as f64 * (self.taps() * input.c) as f64)
    }
}

/// `x` rounded up to a multiple of `m` (`m > 0`).
pub(crate) fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_match_pytorch() {
        // torch.nn.Conv3d(k=3, s=2, p=1) on 7 -> 4; on 8 -> 4; k=3, p=1, s=1 keeps the size.
        let s = Conv3dSpec::new([3, 3, 1], [2, 1, 1], [1, 1, 0]).unwrap();
        assert_eq!(s.output_spatial([7, 5, 4]).unwrap(), [4, 5, 4]);
        assert_eq!(s.output_spatial([8, 1, 1]).unwrap(), [4, 1, 1]);
        let s = Conv3dSpec::new([3; 3], [1; 3], [0; 3]).unwrap();
        assert!(s.output_spatial([2, 5, 5]).is_err());
        assert_eq!(s.output_spatial([3, 4, 5]).unwrap(), [1, 2, 3]);
    }

    #[test]
    fn bad_params_are_rejected() {
        assert!(Conv3dSpec::new([0, 1, 1], [1; 3], [0; 3]).is_err());
        assert!(Conv3dSpec::new([3; 3], [0, 1, 1], [0; 3]).is_err());
        assert!(Conv3dSpec::new([1; 3], [1; 3], [1, 0, 0]).is_err());
        assert_eq!(Conv3dSpec::same([3, 3, 1]).unwrap().padding, [1, 1, 0]);
    }
}
