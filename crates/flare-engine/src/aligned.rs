//! A zeroed f32 buffer whose usable part starts on a 64-byte boundary, in safe code.
//!
//! A 512-bit load from an address that is not 64-byte aligned straddles two cache lines; on
//! the Intel cores this project also runs on, those split loads halve the weight-load rate of
//! the conv kernels. `Vec<f32>` only promises 4-byte alignment, so this over-allocates by one
//! cache line and starts the view at the first aligned element.

/// An owned, zero-initialised buffer whose slice starts 64-byte aligned.
pub(crate) struct AlignedBuf {
    data: Vec<f32>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    /// `len` zeros.
    pub(crate) fn zeros(len: usize) -> AlignedBuf {
        let (data, off) = crate::tensor::aligned_zeros(len);
        AlignedBuf { data, off, len }
    }

    /// The aligned view.
    pub(crate) fn as_slice(&self) -> &[f32] {
        &self.data[self.off..self.off + self.len]
    }

    /// The aligned view, mutable.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data[self.off..self.off + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_is_aligned_and_zeroed() {
        for len in [0, 1, 17, 1000] {
            let mut b = AlignedBuf::zeros(len);
            assert_eq!(b.as_slice().len(), len);
            assert_eq!(b.as_slice().as_ptr() as usize % 64, 0);
            assert!(b.as_slice().iter().all(|&v| v == 0.0));
            b.as_mut_slice().fill(1.0);
        }
    }
}
