//! Orientation codes (RAS, LPS, ...) of a grid's array axes.

use std::fmt;

/// The anatomical direction an array axis points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AxisCode {
    /// Toward the patient's right (+x in RAS+).
    R,
    /// Toward the patient's left.
    L,
    /// Anterior (+y in RAS+).
    A,
    /// Posterior.
    P,
    /// Superior (+z in RAS+).
    S,
    /// Inferior.
    I,
}

impl AxisCode {
    fn from_world_axis(world_axis: usize, positive: bool) -> AxisCode {
        match (world_axis, positive) {
            (0, true) => AxisCode::R,
            (0, false) => AxisCode::L,
            (1, true) => AxisCode::A,
            (1, false) => AxisCode::P,
            (2, true) => AxisCode::S,
            _ => AxisCode::I,
        }
    }

    /// The world axis (0 = x, 1 = y, 2 = z) and whether the code points along +axis in RAS+.
    pub fn world_axis(self) -> (usize, bool) {
        match self {
            AxisCode::R => (0, true),
            AxisCode::L => (0, false),
            AxisCode::A => (1, true),
            AxisCode::P => (1, false),
            AxisCode::S => (2, true),
            AxisCode::I => (2, false),
        }
    }

    fn letter(self) -> char {
        match self {
            AxisCode::R => 'R',
            AxisCode::L => 'L',
            AxisCode::A => 'A',
            AxisCode::P => 'P',
            AxisCode::S => 'S',
            AxisCode::I => 'I',
        }
    }
}

/// The direction each of the three array axes points to, e.g. `RAS` or `LPS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Orientation(pub [AxisCode; 3]);

impl Orientation {
    /// The closest orientation code for a direction matrix (unit columns), as nibabel's
    /// `io_orientation` picks it: axis by axis, the world axis with the largest remaining
    /// component wins and is then taken out of the running.
    pub fn from_direction(direction: &[[f64; 3]; 3]) -> Orientation {
        let mut d = *direction;
        let mut codes = [AxisCode::R; 3];
        for (axis, code) in codes.iter_mut().enumerate() {
            let mut best = 0;
            for r in 1..3 {
                if d[r][axis].abs() > d[best][axis].abs() {
                    best = r;
                }
            }
            *code = AxisCode::from_world_axis(best, d[best][axis] >= 0.0);
            d[best] = [0.0; 3];
        }
        Orientation(codes)
    }

    /// The axis permutation and flips that bring a grid of this orientation to RAS
    /// (arguments for [`crate::Geometry::reorient`]).
    pub fn to_ras(&self) -> ([usize; 3], [bool; 3]) {
        let mut axes = [0; 3];
        let mut flips = [false; 3];
        for (old_axis, code) in self.0.iter().enumerate() {
            let (world, positive) = code.world_axis();
            axes[world] = old_axis;
            flips[world] = !positive;
        }
        (axes, flips)
    }
}

impl fmt::Display for Orientation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0 {
            write!(f, "{}", c.letter())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;

    #[test]
    fn codes_of_common_grids() {
        let ras = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert_eq!(Orientation::from_direction(&ras).to_string(), "RAS");
        let lps = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
        assert_eq!(Orientation::from_direction(&lps).to_string(), "LPS");
        // Coronal slices: axis 0 left, axis 1 inferior, axis 2 anterior.
        let cor = [[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]];
        assert_eq!(Orientation::from_direction(&cor).to_string(), "LIA");
    }

    #[test]
    fn to_ras_gives_ras() {
        let g = Geometry::new(
            [3, 4, 5],
            [1.0, 2.0, 3.0],
            [1.0, 2.0, 3.0],
            [[0.0, 0.0, -1.0], [0.9, 0.1, 0.0], [0.1, -0.9, 0.0]],
        )
        .expect("valid");
        let o = g.orientation();
        assert_eq!(o.to_string(), "AIL");
        let (axes, flips) = o.to_ras();
        assert_eq!(
            g.reorient(axes, flips)
                .expect("reorient")
                .orientation()
                .to_string(),
            "RAS"
        );
    }
}
