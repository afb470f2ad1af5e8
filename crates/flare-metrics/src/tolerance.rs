//! NSD tolerances per organ: 1 mm for every organ in FLARE21, per-label in later editions.

use std::fmt;

use crate::{MetricsError, NUM_ORGANS};

/// The NSD tolerance in millimetres for each organ (label 1 first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances([f64; NUM_ORGANS]);

impl Default for Tolerances {
    /// FLARE21: 1 mm for every organ.
    fn default() -> Self {
        Tolerances([1.0; NUM_ORGANS])
    }
}

impl Tolerances {
    /// The same tolerance for every organ.
    pub fn uniform(mm: f64) -> Result<Self, MetricsError> {
        crate::surface::check_tolerance(mm)?;
        Ok(Tolerances([mm; NUM_ORGANS]))
    }

    /// One tolerance per organ, label 1 first.
    pub fn per_organ(mm: [f64; NUM_ORGANS]) -> Result<Self, MetricsError> {
        for t in mm {
            crate::surface::check_tolerance(t)?;
        }
        Ok(Tolerances(mm))
    }

    /// Parses `"1=5,2=3,3=3,4=5"` (label=millimetres, comma separated); labels not listed keep
    /// `default_mm`. A label outside 1..=4, a repeated label or a bad number is an error.
    pub fn parse_per_label(text: &str, default_mm: f64) -> Result<Self, MetricsError> {
        let bad = |reason: String| MetricsError::BadTolerance {
            text: text.to_string(),
            reason,
        };
        crate::surface::check_tolerance(default_mm)?;
        let mut out = [default_mm; NUM_ORGANS];
        let mut seen = [false; NUM_ORGANS];
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (label, mm) = item
                .split_once('=')
                .ok_or_else(|| bad(format!("{item:?} is not LABEL=MM (e.g. 1=5)")))?;
            let label: usize = label
                .trim()
                .parse()
                .map_err(|_| bad(format!("{:?} is not a label number", label.trim())))?;
            if !(1..=NUM_ORGANS).contains(&label) {
                return Err(bad(format!(
                    "label {label} is not an organ (1..={NUM_ORGANS})"
                )));
            }
            if std::mem::replace(&mut seen[label - 1], true) {
                return Err(bad(format!("label {label} is given twice")));
            }
            let mm: f64 = mm
                .trim()
                .parse()
                .map_err(|_| bad(format!("{:?} is not a number of millimetres", mm.trim())))?;
            if !(mm.is_finite() && mm >= 0.0) {
                return Err(bad(format!("{mm} mm is not a finite distance, 0 or more")));
            }
            out[label - 1] = mm;
        }
        if !seen.contains(&true) {
            return Err(bad("no LABEL=MM pair given".into()));
        }
        Ok(Tolerances(out))
    }

    /// The tolerance of organ `label` (1..=4), or `None` for another label.
    pub fn get(&self, label: usize) -> Option<f64> {
        label.checked_sub(1).and_then(|i| self.0.get(i)).copied()
    }

    /// All four, label 1 first.
    pub fn as_array(&self) -> [f64; NUM_ORGANS] {
        self.0
    }

    /// The official CSV column name of organ `label`'s NSD, e.g. `NSD-1mm_1` or `NSD-2.5mm_4`.
    pub fn column_name(&self, label: usize) -> String {
        let mm = self.get(label).unwrap_or(f64::NAN);
        format!("NSD-{}mm_{label}", Mm(mm))
    }
}

/// Millimetres printed as the FLARE column names do: `1`, `2.5`, never `1.0`.
struct Mm(f64);

impl fmt::Display for Mm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rust's shortest round-trip formatting already drops a trailing ".0".
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_one_mm_everywhere() {
        let t = Tolerances::default();
        assert_eq!(t.as_array(), [1.0; 4]);
        assert_eq!(t.column_name(1), "NSD-1mm_1");
        assert_eq!(t.column_name(4), "NSD-1mm_4");
    }

    #[test]
    fn per_label_parse_keeps_default_for_unlisted() {
        let t = Tolerances::parse_per_label("1=5, 2=3,4=2.5", 1.0).unwrap();
        assert_eq!(t.as_array(), [5.0, 3.0, 1.0, 2.5]);
        assert_eq!(t.column_name(4), "NSD-2.5mm_4");
        assert_eq!(t.column_name(1), "NSD-5mm_1");
    }

    #[test]
    fn per_label_parse_rejects_nonsense() {
        for bad in [
            "", "1", "5=2", "0=1", "1=x", "1=-2", "1=inf", "1=2,1=3", "a=1",
        ] {
            let e = Tolerances::parse_per_label(bad, 1.0).unwrap_err();
            assert!(matches!(e, MetricsError::BadTolerance { .. }), "{bad}: {e}");
        }
        assert!(Tolerances::uniform(-1.0).is_err());
        assert!(Tolerances::uniform(f64::NAN).is_err());
    }
}
