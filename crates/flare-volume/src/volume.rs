//! Voxel data together with its grid.

use crate::{Geometry, GeometryError, Roi};

/// A 3D image: voxels stored `i`-fastest (see the crate docs) on a [`Geometry`].
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T> {
    geometry: Geometry,
    data: Vec<T>,
}

/// An organ label map: 0 background, 1 liver, 2 kidney, 3 spleen, 4 pancreas.
pub type LabelMap = Volume<u8>;

impl<T> Volume<T> {
    /// Pairs voxel data with its grid; the data length must match the shape.
    pub fn new(geometry: Geometry, data: Vec<T>) -> Result<Self, GeometryError> {
        let expected = geometry.n_voxels();
        if data.len() != expected {
            return Err(GeometryError::DataLength {
                shape: geometry.shape(),
                expected,
                actual: data.len(),
            });
        }
        Ok(Volume { geometry, data })
    }

    /// A volume of one value.
    pub fn filled(geometry: Geometry, value: T) -> Self
    where
        T: Clone,
    {
        Volume {
            data: vec![value; geometry.n_voxels()],
            geometry,
        }
    }

    /// The grid.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Voxels along each axis.
    pub fn shape(&self) -> [usize; 3] {
        self.geometry.shape()
    }

    /// The voxels, `i` fastest.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The voxels, mutable (the grid cannot change through this).
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Splits into grid and voxels.
    pub fn into_parts(self) -> (Geometry, Vec<T>) {
        (self.geometry, self.data)
    }

    /// The voxel at `(i, j, k)`, or `None` outside the grid.
    pub fn get(&self, ijk: [usize; 3]) -> Option<&T> {
        let s = self.shape();
        if (0..3).all(|a| ijk[a] < s[a]) {
            self.data.get(self.geometry.linear_index(ijk))
        } else {
            None
        }
    }

    /// A volume on the same grid with every voxel mapped.
    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> Volume<U> {
        Volume {
            geometry: self.geometry,
            data: self.data.iter().map(f).collect(),
        }
    }

    /// Same voxels on another grid of the same shape (e.g. to write a result "like" an input).
    pub fn with_geometry(self, geometry: Geometry) -> Result<Self, GeometryError> {
        Volume::new(geometry, self.data)
    }
}

impl<T: Copy> Volume<T> {
    /// The sub-block `roi`, with its grid.
    pub fn crop(&self, roi: &Roi) -> Result<Volume<T>, GeometryError> {
        let geometry = self.geometry.crop(roi)?;
        let (s, e) = (roi.start(), roi.end());
        let mut data = Vec::with_capacity(geometry.n_voxels());
        for k in s[2]..e[2] {
            for j in s[1]..e[1] {
                let row = self.geometry.linear_index([0, j, k]);
                data.extend_from_slice(&self.data[row + s[0]..row + e[0]]);
            }
        }
        Volume::new(geometry, data)
    }

    /// The volume grown by `before`/`after` voxels per axis, new voxels set to `value`.
    pub fn pad(
        &self,
        before: [usize; 3],
        after: [usize; 3],
        value: T,
    ) -> Result<Volume<T>, GeometryError> {
        let geometry = self.geometry.pad(before, after)?;
        let mut out = Volume::filled(geometry, value);
        out.paste(self, before);
        Ok(out)
    }

    /// Copies `block` into this volume with its voxel (0,0,0) at `at`; parts outside are dropped.
    pub fn paste(&mut self, block: &Volume<T>, at: [usize; 3]) {
        let (bs, s) = (block.shape(), self.shape());
        let nx = bs[0].min(s[0].saturating_sub(at[0]));
        for k in 0..bs[2].min(s[2].saturating_sub(at[2])) {
            for j in 0..bs[1].min(s[1].saturating_sub(at[1])) {
                let src = block.geometry.linear_index([0, j, k]);
                let dst = self.geometry.linear_index([at[0], at[1] + j, at[2] + k]);
                self.data[dst..dst + nx].copy_from_slice(&block.data[src..src + nx]);
            }
        }
    }

    /// The same image with array axes reordered and flipped (see [`Geometry::reorient`]).
    pub fn reorient(&self, axes: [usize; 3], flips: [bool; 3]) -> Result<Volume<T>, GeometryError> {
        let geometry = self.geometry.reorient(axes, flips)?;
        let (old, new) = (self.shape(), geometry.shape());
        let mut data = Vec::with_capacity(self.data.len());
        let mut old_idx = [0usize; 3];
        for c in 0..new[2] {
            for b in 0..new[1] {
                for a in 0..new[0] {
                    for (n, v) in [a, b, c].into_iter().enumerate() {
                        let o = axes[n];
                        old_idx[o] = if flips[n] { old[o] - 1 - v } else { v };
                    }
                    data.push(self.data[self.geometry.linear_index(old_idx)]);
                }
            }
        }
        Volume::new(geometry, data)
    }

    /// The smallest block holding every voxel for which `inside` is true, or `None` if none is.
    pub fn bounding_box(&self, mut inside: impl FnMut(T) -> bool) -> Option<Roi> {
        let s = self.shape();
        let mut lo = s;
        let mut hi = [0usize; 3];
        let mut any = false;
        for k in 0..s[2] {
            for j in 0..s[1] {
                let row = self.geometry.linear_index([0, j, k]);
                for i in 0..s[0] {
                    if inside(self.data[row + i]) {
                        any = true;
                        for (a, v) in [i, j, k].into_iter().enumerate() {
                            lo[a] = lo[a].min(v);
                            hi[a] = hi[a].max(v + 1);
                        }
                    }
                }
            }
        }
        if any { Roi::new(lo, hi).ok() } else { None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Volume<u32> {
        let g = Geometry::axis_aligned([4, 3, 2], [1.0, 2.0, 3.0], [5.0, 6.0, 7.0]).expect("g");
        Volume::new(g, (0..24).collect()).expect("v")
    }

    #[test]
    fn wrong_length_is_rejected() {
        let g = Geometry::axis_aligned([4, 3, 2], [1.0; 3], [0.0; 3]).expect("g");
        assert!(matches!(
            Volume::new(g, vec![0u8; 23]),
            Err(GeometryError::DataLength { .. })
        ));
    }

    #[test]
    fn crop_then_paste_is_identity_on_block() {
        let v = ramp();
        let roi = Roi::new([1, 1, 0], [3, 3, 2]).expect("roi");
        let c = v.crop(&roi).expect("crop");
        assert_eq!(c.shape(), [2, 2, 2]);
        assert_eq!(c.data(), &[5, 6, 9, 10, 17, 18, 21, 22]);
        let mut z = Volume::filled(*v.geometry(), 0u32);
        z.paste(&c, roi.start());
        assert_eq!(z.get([2, 2, 1]), Some(&22));
        assert_eq!(z.get([0, 0, 0]), Some(&0));
    }

    #[test]
    fn pad_places_old_voxels_at_offset() {
        let v = ramp();
        let p = v.pad([1, 0, 2], [0, 1, 0], 99).expect("pad");
        assert_eq!(p.shape(), [5, 4, 4]);
        assert_eq!(p.get([1, 0, 2]), Some(&0));
        assert_eq!(p.get([4, 2, 3]), Some(&23));
        assert_eq!(p.get([0, 0, 0]), Some(&99));
    }

    #[test]
    fn reorient_moves_voxels_with_world() {
        let v = ramp();
        let r = v.reorient([2, 0, 1], [true, false, true]).expect("r");
        for c in 0..3 {
            for b in 0..4 {
                for a in 0..2 {
                    let val = r.get([a, b, c]).copied().expect("inside");
                    let old = [b, 2 - c, 1 - a];
                    assert_eq!(Some(&val), v.get(old));
                    let w_new = r.geometry().index_to_world([a as f64, b as f64, c as f64]);
                    let w_old = v.geometry().index_to_world(old.map(|x| x as f64));
                    assert!((0..3).all(|d| (w_new[d] - w_old[d]).abs() < 1e-9));
                }
            }
        }
    }

    #[test]
    fn bounding_box_finds_block() {
        let mut v = Volume::filled(ramp().geometry().to_owned(), 0u8);
        assert_eq!(v.bounding_box(|x| x > 0), None);
        let g = *v.geometry();
        v.data_mut()[g.linear_index([1, 2, 0])] = 3;
        v.data_mut()[g.linear_index([2, 0, 1])] = 1;
        assert_eq!(
            v.bounding_box(|x| x > 0),
            Some(Roi::new([1, 0, 0], [3, 3, 2]).expect("roi"))
        );
    }
}
