//! The organs scored and their NSD tolerances: FLARE21's four at 1 mm by default, per-label
//! tolerances in later editions, any label set's organs on request.

use std::fmt;

use flare_labels::LabelSet;

use crate::{MAX_ORGANS, MetricsError, NUM_ORGANS};

/// The organs scored (a label set's, FLARE21's by default) and the NSD tolerance in
/// millimetres of each, in the set's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tolerances {
    labels: LabelSet,
    mm: Vec<f64>,
}

impl Default for Tolerances {
    /// FLARE21: its four organs, 1 mm for every organ.
    fn default() -> Self {
        Tolerances {
            labels: LabelSet::flare21(),
            mm: vec![1.0; NUM_ORGANS],
        }
    }
}

impl Tolerances {
    /// FLARE21's organs, the same tolerance for every one.
    pub fn uniform(mm: f64) -> Result<Self, MetricsError> {
        Tolerances::for_labels(&LabelSet::flare21(), mm)
    }

    /// The organs of `labels`, the same tolerance for every one.
    pub fn for_labels(labels: &LabelSet, mm: f64) -> Result<Self, MetricsError> {
        crate::surface::check_tolerance(mm)?;
        let organs = labels.organs().len();
        if organs > MAX_ORGANS {
            return Err(MetricsError::TooManyOrgans {
                organs,
                max: MAX_ORGANS,
            });
        }
        Ok(Tolerances {
            labels: labels.clone(),
            mm: vec![mm; organs],
        })
    }

    /// FLARE21's organs, one tolerance per organ, label 1 first.
    pub fn per_organ(mm: [f64; NUM_ORGANS]) -> Result<Self, MetricsError> {
        for t in mm {
            crate::surface::check_tolerance(t)?;
        }
        Ok(Tolerances {
            labels: LabelSet::flare21(),
            mm: mm.to_vec(),
        })
    }

    /// Parses `"1=5,2=3,3=3,4=5"` (label=millimetres, comma separated) for FLARE21's organs;
    /// labels not listed keep `default_mm`. A label outside 1..=4, a repeated label or a bad
    /// number is an error.
    pub fn parse_per_label(text: &str, default_mm: f64) -> Result<Self, MetricsError> {
        Tolerances::parse_per_label_for(&LabelSet::flare21(), text, default_mm)
    }

    /// [`Tolerances::parse_per_label`] for the organs of `labels`.
    pub fn parse_per_label_for(
        labels: &LabelSet,
        text: &str,
        default_mm: f64,
    ) -> Result<Self, MetricsError> {
        let bad = |reason: String| MetricsError::BadTolerance {
            text: text.to_string(),
            reason,
        };
        let mut out = Tolerances::for_labels(labels, default_mm)?;
        let mut seen = vec![false; out.mm.len()];
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (label, mm) = item
                .split_once('=')
                .ok_or_else(|| bad(format!("{item:?} is not LABEL=MM (e.g. 1=5)")))?;
            let label: usize = label
                .trim()
                .parse()
                .map_err(|_| bad(format!("{:?} is not a label number", label.trim())))?;
            let Some(o) = out.position(label) else {
                return Err(bad(format!(
                    "label {label} is not an organ ({})",
                    out.organ_values_text()
                )));
            };
            if std::mem::replace(&mut seen[o], true) {
                return Err(bad(format!("label {label} is given twice")));
            }
            let mm: f64 = mm
                .trim()
                .parse()
                .map_err(|_| bad(format!("{:?} is not a number of millimetres", mm.trim())))?;
            if !(mm.is_finite() && mm >= 0.0) {
                return Err(bad(format!("{mm} mm is not a finite distance, 0 or more")));
            }
            out.mm[o] = mm;
        }
        if !seen.contains(&true) {
            return Err(bad("no LABEL=MM pair given".into()));
        }
        Ok(out)
    }

    /// The organs' position in the set of organ `label`.
    fn position(&self, label: usize) -> Option<usize> {
        (self.labels.organs().iter()).position(|l| usize::from(l.value) == label)
    }

    /// The organ values as an error names them: `1..=4` for FLARE21 (a run), else a list.
    fn organ_values_text(&self) -> String {
        let values: Vec<u8> = self.labels.organs().iter().map(|l| l.value).collect();
        if values
            .iter()
            .enumerate()
            .all(|(o, &v)| usize::from(v) == o + 1)
        {
            format!("1..={}", values.len())
        } else {
            let v: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            format!("one of {}", v.join(", "))
        }
    }

    /// The tolerance of organ `label` (a value of the set), or `None` for another label.
    pub fn get(&self, label: usize) -> Option<f64> {
        self.position(label).map(|o| self.mm[o])
    }

    /// Every organ's tolerance, in the set's order (FLARE21: label 1 first).
    pub fn as_array(&self) -> &[f64] {
        &self.mm
    }

    /// The organs scored: those of this label set.
    pub fn labels(&self) -> &LabelSet {
        &self.labels
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

    /// Another label set: its organ values are the labels a tolerance names.
    #[test]
    fn per_label_parse_for_another_label_set() {
        use flare_labels::Label;
        let set = LabelSet::new(vec![
            Label::background(),
            Label::organ(1, "tumour"),
            Label::organ(7, "cyst"),
        ])
        .unwrap();
        let t = Tolerances::parse_per_label_for(&set, "7=2", 1.0).unwrap();
        assert_eq!(t.as_array(), [1.0, 2.0]);
        assert_eq!((t.get(7), t.get(2)), (Some(2.0), None));
        assert_eq!(t.column_name(7), "NSD-2mm_7");
        let e = Tolerances::parse_per_label_for(&set, "2=1", 1.0).unwrap_err();
        assert!(e.to_string().contains("not an organ (one of 1, 7)"), "{e}");
        let e = Tolerances::parse_per_label("5=2", 1.0).unwrap_err();
        assert!(
            e.to_string().contains("label 5 is not an organ (1..=4)"),
            "{e}"
        );
        let many: Vec<Label> = std::iter::once(Label::background())
            .chain((1..=31).map(|v| Label::organ(v, &format!("o{v}"))))
            .collect();
        let e = Tolerances::for_labels(&LabelSet::new(many).unwrap(), 1.0).unwrap_err();
        assert!(
            matches!(e, MetricsError::TooManyOrgans { organs: 31, .. }),
            "{e}"
        );
    }
}
