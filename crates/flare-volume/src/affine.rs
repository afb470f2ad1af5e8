//! The 4x4 voxel-to-world matrix of NIfTI.

use std::fmt;

/// A NIfTI-style affine: `world_mm = m * [i, j, k, 1]`, row-major, last row `[0, 0, 0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// The matrix, row-major.
    pub m: [[f64; 4]; 4],
}

impl Affine {
    /// The identity: voxel indices are millimetres.
    pub const IDENTITY: Affine = Affine {
        m: [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
    };

    /// Builds an affine from its top three rows (as stored in NIfTI's `srow_x/y/z`).
    pub fn from_rows(rows: [[f64; 4]; 3]) -> Self {
        Affine {
            m: [rows[0], rows[1], rows[2], [0.0, 0.0, 0.0, 1.0]],
        }
    }

    /// The top three rows, as NIfTI's `srow_x/y/z` store them.
    pub fn rows(&self) -> [[f64; 4]; 3] {
        [self.m[0], self.m[1], self.m[2]]
    }

    /// The 3x3 linear part (direction times spacing).
    pub fn linear(&self) -> [[f64; 3]; 3] {
        let mut l = [[0.0; 3]; 3];
        for (r, row) in l.iter_mut().enumerate() {
            row.copy_from_slice(&self.m[r][..3]);
        }
        l
    }

    /// The translation: the world position of voxel (0, 0, 0).
    pub fn translation(&self) -> [f64; 3] {
        [self.m[0][3], self.m[1][3], self.m[2][3]]
    }

    /// Determinant of the 3x3 linear part.
    pub fn determinant(&self) -> f64 {
        det3(&self.linear())
    }

    /// Maps a (continuous) voxel index to world millimetres.
    pub fn apply(&self, ijk: [f64; 3]) -> [f64; 3] {
        let mut out = [0.0; 3];
        for (r, o) in out.iter_mut().enumerate() {
            *o = self.m[r][0] * ijk[0]
                + self.m[r][1] * ijk[1]
                + self.m[r][2] * ijk[2]
                + self.m[r][3];
        }
        out
    }

    /// The inverse affine, or `None` when the linear part is singular.
    pub fn inverse(&self) -> Option<Affine> {
        let inv = inverse3(&self.linear())?;
        let t = self.translation();
        let mut rows = [[0.0; 4]; 3];
        for r in 0..3 {
            rows[r][..3].copy_from_slice(&inv[r]);
            rows[r][3] = -(inv[r][0] * t[0] + inv[r][1] * t[1] + inv[r][2] * t[2]);
        }
        Some(Affine::from_rows(rows))
    }

    /// Largest absolute difference between two affines, entry by entry.
    pub fn max_abs_diff(&self, other: &Affine) -> f64 {
        let mut d: f64 = 0.0;
        for r in 0..4 {
            for c in 0..4 {
                d = d.max((self.m[r][c] - other.m[r][c]).abs());
            }
        }
        d
    }

    /// Whether every entry is finite.
    pub fn is_finite(&self) -> bool {
        self.m.iter().flatten().all(|v| v.is_finite())
    }
}

impl fmt::Display for Affine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (r, row) in self.m.iter().enumerate() {
            if r > 0 {
                writeln!(f)?;
            }
            // Adding 0.0 turns -0.0 into 0.0, so flips show as signs only where they are.
            let [a, b, c, d] = row.map(|v| v + 0.0);
            write!(f, "[{a:>11.5} {b:>11.5} {c:>11.5} {d:>11.5}]")?;
        }
        Ok(())
    }
}

/// Determinant of a 3x3 matrix.
pub(crate) fn det3(a: &[[f64; 3]; 3]) -> f64 {
    a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
}

/// Inverse of a 3x3 matrix by cofactors, or `None` when (nearly) singular relative to its scale.
pub(crate) fn inverse3(a: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = det3(a);
    let scale = a.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    if !det.is_finite() || scale == 0.0 || det.abs() <= 1e-12 * scale.powi(3) {
        return None;
    }
    let mut inv = [[0.0; 3]; 3];
    // Row and column indices are the cofactor formula's own.
    #[allow(clippy::needless_range_loop)]
    for r in 0..3 {
        for c in 0..3 {
            // Cofactor of (c, r), i.e. the adjugate's (r, c) entry.
            let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
            let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
            inv[r][c] = (a[r1][c1] * a[r2][c2] - a[r1][c2] * a[r2][c1]) / det;
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_round_trips() {
        let a = Affine::from_rows([
            [-0.7, 0.1, 0.05, 120.0],
            [0.08, 0.69, -0.2, -30.0],
            [0.0, 0.3, 2.4, 17.5],
        ]);
        let inv = a.inverse().expect("invertible");
        let p = [12.5, -3.0, 40.25];
        let q = inv.apply(a.apply(p));
        for d in 0..3 {
            assert!((p[d] - q[d]).abs() < 1e-9, "{p:?} vs {q:?}");
        }
    }

    #[test]
    fn singular_has_no_inverse() {
        let a = Affine::from_rows([
            [1.0, 2.0, 3.0, 0.0],
            [2.0, 4.0, 6.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ]);
        assert!(a.inverse().is_none());
        assert_eq!(a.determinant(), 0.0);
    }
}
