//! The engine's one tensor type: 5D, f32, channels-last `[N, D, H, W, C]`.
//!
//! Channels are fastest so that a SIMD register holds consecutive channels of one voxel, which is
//! what every kernel vectorises over. The spatial axes map onto a volume's axes as
//! `W = i`, `H = j`, `D = k` (NIfTI order, `i` fastest), so a volume's voxel buffer with one
//! channel is already a valid `[1, nk, nj, ni, 1]` tensor and never needs transposing.

use std::fmt;

use crate::{EngineError, Result};

/// The shape of a tensor: batch, depth, height, width, channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape5 {
    /// Batch size.
    pub n: usize,
    /// Depth (the volume's `k` axis).
    pub d: usize,
    /// Height (the volume's `j` axis).
    pub h: usize,
    /// Width (the volume's `i` axis).
    pub w: usize,
    /// Channels (fastest in memory).
    pub c: usize,
}

impl Shape5 {
    /// A shape from `[n, d, h, w, c]`.
    pub const fn new(n: usize, d: usize, h: usize, w: usize, c: usize) -> Shape5 {
        Shape5 { n, d, h, w, c }
    }

    /// Number of elements (saturating: an overflowing shape is rejected by [`Tensor::zeros`]).
    pub fn len(&self) -> usize {
        self.checked_len().unwrap_or(usize::MAX)
    }

    /// Whether any axis is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of elements, or `None` if it overflows `usize`.
    pub fn checked_len(&self) -> Option<usize> {
        [self.d, self.h, self.w, self.c]
            .iter()
            .try_fold(self.n, |acc, &x| acc.checked_mul(x))
    }

    /// Number of voxels (`n * d * h * w`).
    pub fn voxels(&self) -> usize {
        self.n * self.d * self.h * self.w
    }

    /// Number of rows (`n * d * h`): a row is `w` consecutive voxels.
    pub fn rows(&self) -> usize {
        self.n * self.d * self.h
    }

    /// Elements in one row (`w * c`).
    pub fn row_len(&self) -> usize {
        self.w * self.c
    }

    /// The spatial size `[d, h, w]`.
    pub fn spatial(&self) -> [usize; 3] {
        [self.d, self.h, self.w]
    }

    /// Linear index of element `(n, d, h, w, c)`.
    pub fn index(&self, n: usize, d: usize, h: usize, w: usize, c: usize) -> usize {
        (((n * self.d + d) * self.h + h) * self.w + w) * self.c + c
    }

    /// The same spatial grid with `c` channels.
    pub fn with_channels(&self, c: usize) -> Shape5 {
        Shape5 { c, ..*self }
    }
}

impl fmt::Display for Shape5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {}, {}, {}, {}]",
            self.n, self.d, self.h, self.w, self.c
        )
    }
}

/// A dense 5D f32 tensor in channels-last order (see the module doc).
///
/// Tensors the engine allocates start on a 64-byte boundary (one cache line, one AVX-512
/// vector), so that 16 channels of a voxel load or store without straddling two lines; a
/// buffer handed to [`Tensor::from_vec`] is used as it is.
pub struct Tensor {
    shape: Shape5,
    buf: Vec<f32>,
    off: usize,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: Shape5) -> Result<Tensor> {
        let len = shape.checked_len().ok_or_else(|| EngineError::Shape {
            op: "tensor",
            detail: format!("shape {shape} overflows the address space"),
        })?;
        let (buf, off) = aligned_zeros(len);
        Ok(Tensor { shape, buf, off })
    }

    /// Wraps a buffer laid out as `[N, D, H, W, C]`, channels fastest (no copy).
    pub fn from_vec(shape: Shape5, data: Vec<f32>) -> Result<Tensor> {
        let expected = shape.checked_len().unwrap_or(usize::MAX);
        if data.len() != expected {
            return Err(EngineError::DataLength {
                what: "tensor",
                shape: shape.to_string(),
                expected,
                len: data.len(),
            });
        }
        Ok(Tensor {
            shape,
            buf: data,
            off: 0,
        })
    }

    /// The shape.
    pub fn shape(&self) -> Shape5 {
        self.shape
    }

    /// The elements, channels fastest.
    pub fn data(&self) -> &[f32] {
        &self.buf[self.off..self.off + self.shape.len()]
    }

    /// The elements, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        let len = self.shape.len();
        &mut self.buf[self.off..self.off + len]
    }

    /// Gives the buffer back (moving the elements to its start if the tensor was aligned
    /// inside a larger allocation).
    pub fn into_vec(self) -> Vec<f32> {
        let len = self.shape.len();
        let mut buf = self.buf;
        buf.drain(..self.off);
        buf.truncate(len);
        buf
    }

    /// The element at `(n, d, h, w, c)`, or `None` outside the tensor.
    pub fn get(&self, n: usize, d: usize, h: usize, w: usize, c: usize) -> Option<f32> {
        let s = self.shape;
        if n < s.n && d < s.d && h < s.h && w < s.w && c < s.c {
            self.data().get(s.index(n, d, h, w, c)).copied()
        } else {
            None
        }
    }
}

/// `len` zeros starting at a 64-byte boundary inside the returned vector, and that offset.
/// Over-allocates one cache line instead of using an aligned allocator, which would need
/// `unsafe`.
pub(crate) fn aligned_zeros(len: usize) -> (Vec<f32>, usize) {
    const LINE: usize = 64 / std::mem::size_of::<f32>();
    let buf = vec![0.0f32; len + LINE];
    let misalign = (buf.as_ptr() as usize / std::mem::size_of::<f32>()) % LINE;
    (buf, (LINE - misalign) % LINE)
}

impl Clone for Tensor {
    /// A copy that is 64-byte aligned again (a plain `Vec` clone would keep the offset but not
    /// the alignment).
    fn clone(&self) -> Tensor {
        let len = self.shape.len();
        let (mut buf, off) = aligned_zeros(len);
        buf[off..off + len].copy_from_slice(self.data());
        Tensor {
            shape: self.shape,
            buf,
            off,
        }
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        self.shape == other.shape && self.data() == other.data()
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape)
            .field("data", &self.data())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_channels_last() {
        let s = Shape5::new(2, 3, 4, 5, 6);
        assert_eq!(s.index(0, 0, 0, 0, 1), 1);
        assert_eq!(s.index(0, 0, 0, 1, 0), 6);
        assert_eq!(s.index(0, 0, 1, 0, 0), 30);
        assert_eq!(s.index(0, 1, 0, 0, 0), 120);
        assert_eq!(s.index(1, 0, 0, 0, 0), 360);
        assert_eq!(s.len(), 720);
        assert_eq!(s.rows(), 24);
    }

    #[test]
    fn from_vec_checks_length() {
        let s = Shape5::new(1, 2, 2, 2, 3);
        assert!(Tensor::from_vec(s, vec![0.0; 24]).is_ok());
        let e = Tensor::from_vec(s, vec![0.0; 23]).unwrap_err();
        assert!(matches!(
            e,
            EngineError::DataLength {
                expected: 24,
                len: 23,
                ..
            }
        ));
        let t = Tensor::from_vec(s, (0..24).map(|v| v as f32).collect()).unwrap();
        assert_eq!(t.get(0, 1, 0, 1, 2), Some(17.0));
        assert_eq!(t.get(0, 2, 0, 0, 0), None);
    }

    #[test]
    fn engine_tensors_are_cache_line_aligned() {
        for s in [Shape5::new(1, 1, 1, 1, 1), Shape5::new(1, 7, 5, 3, 17)] {
            let t = Tensor::zeros(s).unwrap();
            assert_eq!(t.data().as_ptr() as usize % 64, 0);
            assert_eq!(t.data().len(), s.len());
            let mut u = t.clone();
            assert_eq!(u.data().as_ptr() as usize % 64, 0);
            u.data_mut()[0] = 3.0;
            assert_ne!(u, t);
            let v = u.clone().into_vec();
            assert_eq!(v.len(), s.len());
            assert_eq!(v[0], 3.0);
            assert_eq!(Tensor::from_vec(s, v).unwrap(), u);
        }
    }

    #[test]
    fn overflowing_shape_is_an_error() {
        let s = Shape5::new(usize::MAX, 2, 1, 1, 1);
        assert!(Tensor::zeros(s).is_err());
    }
}
