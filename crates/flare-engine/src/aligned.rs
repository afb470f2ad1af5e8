//! A zeroed buffer (f32, or the u32 bf16 pairs of the bf16 kernels) whose usable part starts on
//! a 64-byte boundary, in safe code.
//!
//! A 512-bit load from an address that is not 64-byte aligned straddles two cache lines; on
//! the Intel cores this project also runs on, those split loads halve the weight-load rate of
//! the conv kernels. `Vec<f32>` only promises 4-byte alignment, so this over-allocates by one
//! cache line and starts the view at the first aligned element.

/// An owned, zero-initialised buffer whose slice starts 64-byte aligned.
pub(crate) struct AlignedBuf<T = f32> {
    data: Vec<T>,
    off: usize,
    len: usize,
}

impl<T: Copy + Default> AlignedBuf<T> {
    /// `len` zeros (`T::default()`).
    pub(crate) fn zeros(len: usize) -> AlignedBuf<T> {
        let line = (64 / std::mem::size_of::<T>()).max(1);
        let data = vec![T::default(); len + line];
        let misalign = (data.as_ptr() as usize / std::mem::size_of::<T>()) % line;
        AlignedBuf {
            data,
            off: (line - misalign) % line,
            len,
        }
    }

    /// The aligned view.
    pub(crate) fn as_slice(&self) -> &[T] {
        &self.data[self.off..self.off + self.len]
    }

    /// The aligned view, mutable.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data[self.off..self.off + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_is_aligned_and_zeroed() {
        for len in [0, 1, 17, 1000] {
            let mut b: AlignedBuf = AlignedBuf::zeros(len);
            assert_eq!(b.as_slice().len(), len);
            assert_eq!(b.as_slice().as_ptr() as usize % 64, 0);
            assert!(b.as_slice().iter().all(|&v| v == 0.0));
            b.as_mut_slice().fill(1.0);
            let p: AlignedBuf<u32> = AlignedBuf::zeros(len);
            assert_eq!(p.as_slice().len(), len);
            assert_eq!(p.as_slice().as_ptr() as usize % 64, 0);
        }
    }
}
