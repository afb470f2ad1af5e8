//! The one rule for linear interpolation along an axis: where a continuous source index falls
//! among the source voxels ([`Tap`]) and the blend of two neighbours ([`lerp`]).
//!
//! Resampling, the lean export, the network's input (flare-pipeline) and training samples
//! (flare-train) all interpolate through this rule, so a training sample and the inference
//! input of the same region are the same numbers, not the same by coincidence.
//!
//! # The rule
//! Voxels `lo..=hi` of an axis are inside (all of them for a scan; fewer where training cuts
//! a scan's field of view short). A source index `p` is *inside* when it lies within
//! `[lo - 0.5, hi + 0.5]`: the field of view those voxels cover, their outer faces included.
//! Inside, `p` is clamped to `[lo, hi]`, so the outermost half voxel repeats the edge value (as
//! ITK's linear interpolator and `scipy.ndimage.map_coordinates(..., mode="nearest")` do), and
//! an index within [`SNAP_TOL`] of an integer is snapped to it, so an identity or integer-shift
//! grid reproduces voxels exactly despite rounding in the composed affine.

/// Slack on the inside test, absorbing rounding in the composed affine.
pub const EDGE_TOL: f64 = 1e-6;
/// Source indices this close to an integer are snapped to it.
pub const SNAP_TOL: f64 = 1e-9;

/// Where one continuous source index falls among the source voxels along one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tap {
    /// Lower neighbour.
    pub i0: usize,
    /// Upper neighbour (equal to `i0` when the weight is 0).
    pub i1: usize,
    /// Weight of `i1`, in `[0, 1)`.
    pub w: f32,
    /// Nearest voxel (halves round up, as ITK does).
    pub near: usize,
    /// Within the field of view along this axis; when false the other fields are meaningless.
    pub inside: bool,
}

impl Tap {
    /// Where `p` falls on an axis of `n` voxels (see the module doc).
    #[inline(always)]
    pub fn new(p: f64, n: usize) -> Tap {
        match n {
            0 => Tap::OUTSIDE,
            _ => Tap::within(p, [0, n - 1]),
        }
    }

    /// Where `p` falls when only voxels `lo..=hi` of the axis are inside (see the module doc).
    #[inline(always)]
    pub fn within(p: f64, [lo, hi]: [usize; 2]) -> Tap {
        // Written so that NaN fails the test too (and is never used as an index).
        let inside = p >= lo as f64 - 0.5 - EDGE_TOL && p <= hi as f64 + 0.5 + EDGE_TOL;
        if !inside || hi <= lo {
            return Tap {
                i0: lo,
                i1: lo,
                near: lo,
                inside: inside && hi == lo,
                ..Tap::OUTSIDE
            };
        }
        let mut q = p.clamp(lo as f64, hi as f64);
        // `q >= 0`, so truncation is floor; `f64::floor`/`round` would be libm calls on
        // baseline x86-64, and this runs for every voxel on the general paths. `as i64` is one
        // instruction; `as usize` from f64 needs a range fix-up.
        let rounded = (q + 0.5) as i64 as f64;
        if (q - rounded).abs() < SNAP_TOL {
            q = rounded;
        }
        let near = ((q + 0.5) as i64 as usize).min(hi);
        let i0 = (q as i64 as usize).min(hi - 1);
        let w = (q - i0 as f64) as f32;
        if w <= 0.0 {
            Tap {
                i0,
                i1: i0,
                w: 0.0,
                near,
                inside,
            }
        } else if w >= 1.0 {
            Tap {
                i0: i0 + 1,
                i1: i0 + 1,
                w: 0.0,
                near,
                inside,
            }
        } else {
            Tap {
                i0,
                i1: i0 + 1,
                w,
                near,
                inside,
            }
        }
    }

    const OUTSIDE: Tap = Tap {
        i0: 0,
        i1: 0,
        w: 0.0,
        near: 0,
        inside: false,
    };
}

/// `a` and `b` weighted `1 - w` and `w`; exact when `w` is 0 (a [`Tap`] then also has
/// `i1 == i0`).
#[inline(always)]
pub fn lerp(a: f32, b: f32, w: f32) -> f32 {
    a * (1.0 - w) + b * w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_clamp_snap_and_reject() {
        let t = Tap::new(-0.3, 5);
        assert!(t.inside);
        assert_eq!((t.i0, t.i1, t.w, t.near), (0, 0, 0.0, 0));
        let t = Tap::new(4.4, 5);
        assert_eq!((t.i0, t.i1, t.w, t.near, t.inside), (4, 4, 0.0, 4, true));
        assert!(!Tap::new(4.6, 5).inside);
        assert!(!Tap::new(-0.6, 5).inside);
        assert!(!Tap::new(f64::NAN, 5).inside);
        let t = Tap::new(2.0 - 1e-13, 5);
        assert_eq!((t.i0, t.i1, t.w), (2, 2, 0.0));
        let t = Tap::new(1.5, 5);
        assert_eq!((t.i0, t.i1, t.w, t.near), (1, 2, 0.5, 2));
        let t = Tap::new(0.2, 1);
        assert_eq!((t.i0, t.i1, t.inside), (0, 0, true));
        assert!(!Tap::new(0.0, 0).inside);
    }

    /// A part of the axis behaves as a whole axis shifted by `lo`.
    #[test]
    fn a_part_of_the_axis_is_a_shifted_whole_axis() {
        for p in [
            -0.7,
            -0.5,
            -0.2,
            0.0,
            0.3,
            1.5,
            2.0 + 1e-12,
            3.49,
            3.6,
            f64::NAN,
        ] {
            let whole = Tap::new(p, 4);
            let part = Tap::within(p + 10.0, [10, 13]);
            assert_eq!(whole.inside, part.inside, "{p}");
            if whole.inside {
                assert_eq!(
                    (whole.i0 + 10, whole.i1 + 10, whole.near + 10),
                    (part.i0, part.i1, part.near),
                    "{p}"
                );
                assert!((whole.w - part.w).abs() < 1e-6, "{p}");
            }
        }
        let one = Tap::within(7.3, [7, 7]);
        assert_eq!((one.i0, one.i1, one.near, one.inside), (7, 7, 7, true));
        assert!(!Tap::within(8.6, [7, 7]).inside);
    }

    #[test]
    fn lerp_is_exact_at_its_ends() {
        assert_eq!(lerp(0.1, 7.3, 0.0), 0.1);
        assert_eq!(lerp(0.1, 7.3, 1.0), 7.3);
        assert_eq!(lerp(2.0, 4.0, 0.25), 2.5);
    }
}
