//! Label values as stored in a file, and which organ each one denotes.
//!
//! FLARE's evaluation reads label maps as numbers and compares them with `== i` for the organs
//! i = 1..4, so any other stored value (5, 255, -3, 1.5, NaN) belongs to no organ: it is scored
//! as background, and we count it so that the user can be warned. Other label sets
//! ([`flare_labels::LabelSet`], carried by [`crate::Tolerances`]) follow the same rule with
//! their own organ values.

use flare_labels::{LabelSet, flare21};

/// Background (label 0).
pub const BACKGROUND: u8 = 0;
/// FLARE21's class of any stored value other than 0..=4 ([`LabelValue::class`]).
pub const OTHER: u8 = 5;
/// Number of FLARE21's organs (labels 1..=4), the official evaluation's.
pub const NUM_ORGANS: usize = flare21::ORGAN_COUNT;
/// FLARE21's organ names, label 1 first (from [`flare_labels::flare21::NAMES`]).
pub const ORGAN_NAMES: [&str; NUM_ORGANS] = flare21::NAMES;
/// The most organs a label set may have to be scored: the per-case tallies are fixed-size
/// tables (FLARE22 has 13 organs, AMOS 15).
pub const MAX_ORGANS: usize = 30;

/// A voxel value of a label map: integer or floating point, as a NIfTI file may store it.
pub trait LabelValue: Copy + Send + Sync {
    /// The label value this voxel holds when it is exactly an integer in 0..=255 (as NumPy's
    /// `== i` compares), `None` otherwise (negative, fractional, NaN, too large).
    fn value(self) -> Option<u8>;

    /// The FLARE21 organ label 1..=4 this value equals, [`BACKGROUND`] for 0, [`OTHER`] for
    /// anything else.
    fn class(self) -> u8 {
        match self.value() {
            Some(v) if usize::from(v) <= NUM_ORGANS => v,
            _ => OTHER,
        }
    }

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

macro_rules! integer_labels {
    ($($t:ty),*) => {$(
        impl LabelValue for $t {
            #[inline]
            fn value(self) -> Option<u8> {
                u8::try_from(self).ok()
            }
        }
    )*};
}

macro_rules! float_labels {
    ($($t:ty),*) => {$(
        impl LabelValue for $t {
            #[inline]
            fn value(self) -> Option<u8> {
                // Exact comparison, as NumPy's `== i` on the floats nibabel returns (NaN fails).
                if (0.0..=255.0).contains(&self) && self.fract() == 0.0 {
                    Some(self as u8)
                } else {
                    None
                }
            }
        }
    )*};
}

integer_labels!(i8, i16, i32, i64, u16, u32, u64);

impl LabelValue for u8 {
    #[inline]
    fn value(self) -> Option<u8> {
        Some(self)
    }

    fn as_u8_slice(values: &[u8]) -> Option<&[u8]> {
        Some(values)
    }
}
float_labels!(f32, f64);

impl LabelValue for bool {
    #[inline]
    fn value(self) -> Option<u8> {
        Some(u8::from(self))
    }
}

/// Which class each stored value falls in for one label set: 0 background, `1..=n` the set's
/// organs in order, `n + 1` anything else.
#[derive(Debug, Clone)]
pub(crate) struct ClassMap {
    class_of: [u8; 256],
    /// Organs in the set.
    organs: usize,
    /// A stored value that is no organ of the set (not 0): what [`ClassMap::canonical`] stores
    /// for "anything else" (5 for FLARE21).
    other_value: u8,
    /// The organ values, in order.
    values: Vec<u8>,
}

impl ClassMap {
    /// The map of `labels`' organs (at most [`MAX_ORGANS`]; the caller checks).
    pub(crate) fn new(labels: &LabelSet) -> ClassMap {
        let values: Vec<u8> = labels.organs().iter().map(|l| l.value).collect();
        let organs = values.len();
        let other = organs as u8 + 1;
        let mut class_of = [other; 256];
        class_of[usize::from(BACKGROUND)] = 0;
        for (o, &v) in values.iter().enumerate() {
            class_of[usize::from(v)] = o as u8 + 1;
        }
        let other_value = (1..=255u8)
            .find(|&v| class_of[usize::from(v)] == other)
            .unwrap_or(u8::MAX);
        ClassMap {
            class_of,
            organs,
            other_value,
            values,
        }
    }

    /// Organs in the set.
    pub(crate) fn organs(&self) -> usize {
        self.organs
    }

    /// The class of "anything else".
    pub(crate) fn other(&self) -> u8 {
        self.organs as u8 + 1
    }

    /// The class of a byte value.
    #[inline]
    pub(crate) fn of_byte(&self, v: u8) -> u8 {
        self.class_of[usize::from(v)]
    }

    /// The class of any stored value.
    #[inline]
    pub(crate) fn of<L: LabelValue>(&self, v: L) -> u8 {
        v.value().map_or(self.other(), |b| self.of_byte(b))
    }

    /// The value as a byte that scores the same: itself for background and organs, one
    /// "other" byte for anything else.
    #[inline]
    pub(crate) fn canonical<L: LabelValue>(&self, v: L) -> u8 {
        match v.value() {
            Some(b) if self.of_byte(b) != self.other() => b,
            _ => self.other_value,
        }
    }

    /// The byte [`ClassMap::canonical`] gives anything else.
    pub(crate) fn other_value(&self) -> u8 {
        self.other_value
    }

    /// The values that are background or an organ, as a warning names them: `0..4` for
    /// FLARE21 (a run), else a list.
    pub(crate) fn describe(&self) -> String {
        if self
            .values
            .iter()
            .enumerate()
            .all(|(o, &v)| usize::from(v) == o + 1)
        {
            format!("0..{}", self.organs)
        } else {
            let v: Vec<String> = std::iter::once(0)
                .chain(self.values.iter().copied())
                .map(|v| v.to_string())
                .collect();
            v.join(", ")
        }
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

    /// Another label set: its own organ values are classes 1..=n in order, everything else
    /// (FLARE21's organs included) "other".
    #[test]
    fn a_two_organ_set_maps_its_own_values() {
        use flare_labels::Label;
        let set = LabelSet::new(vec![
            Label::background(),
            Label::organ(7, "tumour"),
            Label::organ(1, "cyst"),
        ])
        .unwrap();
        let m = ClassMap::new(&set);
        assert_eq!((m.organs(), m.other()), (2, 3));
        assert_eq!([0u8, 7, 1, 2, 255].map(|v| m.of_byte(v)), [0, 1, 2, 3, 3]);
        assert_eq!((m.of(7.0f32), m.of(7.5f64), m.of(-7i16)), (1, 3, 3));
        assert_eq!(m.other_value(), 2);
        assert_eq!([m.canonical(7i32), m.canonical(300i32)], [7, 2]);
        assert_eq!(m.describe(), "0, 7, 1");
        let f = ClassMap::new(&LabelSet::flare21());
        assert_eq!((f.other_value(), f.describe()), (OTHER, "0..4".to_string()));
        for v in 0..=255u8 {
            assert_eq!(f.of_byte(v), v.class(), "{v}");
        }
    }
}
