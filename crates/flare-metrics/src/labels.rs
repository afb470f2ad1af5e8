//! Label values as stored in a file, and which organ each one denotes.
//!
//! FLARE's evaluation reads label maps as numbers and compares them with `== i` for the organs
//! i = 1..4, so any other stored value (5, 255, -3, 1.5, NaN) belongs to no organ: it is scored
//! as background, and we count it so that the user can be warned.

/// Background (label 0).
pub const BACKGROUND: u8 = 0;
/// Any stored value other than 0..=4.
pub const OTHER: u8 = 5;
/// Number of organs scored (labels 1..=4).
pub const NUM_ORGANS: usize = 4;
/// The organs' names, label 1 first.
pub const ORGAN_NAMES: [&str; NUM_ORGANS] = ["liver", "kidney", "spleen", "pancreas"];

/// A voxel value of a label map: integer or floating point, as a NIfTI file may store it.
pub trait LabelValue: Copy + Send + Sync {
    /// The organ label 1..=4 this value equals, [`BACKGROUND`] for 0, [`OTHER`] for anything else.
    fn class(self) -> u8;

    /// The values as bytes when the type is `u8`, so that scoring can skip background eight
    /// voxels at a time; `None` for other types.
    fn as_u8_slice(values: &[Self]) -> Option<&[u8]>
    where
        Self: Sized,
    {
        let _ = values;
        None
    }
}

macro_rules! signed_labels {
    ($($t:ty),*) => {$(
        impl LabelValue for $t {
            #[inline]
            fn class(self) -> u8 {
                if (0..=4).contains(&self) { self as u8 } else { OTHER }
            }
        }
    )*};
}

macro_rules! unsigned_labels {
    ($($t:ty),*) => {$(
        impl LabelValue for $t {
            #[inline]
            fn class(self) -> u8 {
                if self <= 4 { self as u8 } else { OTHER }
            }
        }
    )*};
}

macro_rules! float_labels {
    ($($t:ty),*) => {$(
        impl LabelValue for $t {
            #[inline]
            fn class(self) -> u8 {
                // Exact comparison, as NumPy's `== i` on the floats nibabel returns.
                match self {
                    v if v == 0.0 => BACKGROUND,
                    v if v == 1.0 => 1,
                    v if v == 2.0 => 2,
                    v if v == 3.0 => 3,
                    v if v == 4.0 => 4,
                    _ => OTHER,
                }
            }
        }
    )*};
}

signed_labels!(i8, i16, i32, i64);
unsigned_labels!(u16, u32, u64);

impl LabelValue for u8 {
    #[inline]
    fn class(self) -> u8 {
        if self <= 4 { self } else { OTHER }
    }

    fn as_u8_slice(values: &[u8]) -> Option<&[u8]> {
        Some(values)
    }
}
float_labels!(f32, f64);

impl LabelValue for bool {
    #[inline]
    fn class(self) -> u8 {
        u8::from(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_0_to_4_are_other() {
        assert_eq!(4u8.class(), 4);
        assert_eq!(5u8.class(), OTHER);
        assert_eq!(255u8.class(), OTHER);
        assert_eq!((-1i16).class(), OTHER);
        assert_eq!(2i32.class(), 2);
        assert_eq!(3.0f32.class(), 3);
        assert_eq!(3.5f64.class(), OTHER);
        assert_eq!(f64::NAN.class(), OTHER);
        assert_eq!((-0.0f32).class(), BACKGROUND);
        assert_eq!(260u16.class(), OTHER);
    }
}
