//! The label set: what each value of a label map means, in one place.
//!
//! A [`LabelSet`] lists a model's output classes, background first, and for each organ its
//! names, its colour in reports, how many connected pieces it has and how it is post-processed.
//! The model card carries it (it is the card's `labels` list), and metrics, reports, training
//! logs and the command line read names and rules from it, by label value, never by guessing
//! from a name. [`LabelSet::flare21`] is the built-in set of the FLARE21 task: 1 liver,
//! 2 kidney, 3 spleen, 4 pancreas; its facts are the constants of [`flare21`].
//!
//! ```
//! let labels = flare_labels::LabelSet::flare21();
//! let kidney = labels.get(2).expect("label 2");
//! assert_eq!((kidney.name.as_str(), kidney.components), ("kidney", 2));
//! assert_eq!(labels.organs().len(), 4);
//! ```
//!
//! Cards written before the rules were stored list only `value` and `name`; the missing
//! fields are filled in by [`Label::legacy`], which reproduces what flare decided then.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The facts of FLARE21's label set (organs only, label 1 first), the one place they are
/// written down; [`LabelSet::flare21`] is built from them.
pub mod flare21 {
    /// Organs in FLARE21: labels 1..=4.
    pub const ORGAN_COUNT: usize = 4;
    /// Names as written in model cards, training logs and CSV columns (`kidney_ml`).
    pub const NAMES: [&str; ORGAN_COUNT] = ["liver", "kidney", "spleen", "pancreas"];
    /// Names in messages and reports: label 2 is both kidneys.
    pub const DISPLAY_NAMES: [&str; ORGAN_COUNT] = ["liver", "kidneys", "spleen", "pancreas"];
    /// Outline colours: vermillion, sky blue, bluish green and yellow from Okabe and Ito's
    /// colour-blind-safe palette. Of its colours, these four stay furthest apart under
    /// simulated protanopia and deuteranopia (tested in flare-report), and each is far from any
    /// grey, so an outline never passes for CT.
    pub const COLOURS_RGB: [[u8; 3]; ORGAN_COUNT] =
        [[213, 94, 0], [86, 180, 233], [0, 158, 115], [240, 228, 66]];
    /// Connected pieces each organ has: two kidneys, one of everything else.
    pub const COMPONENTS: [u8; ORGAN_COUNT] = [1, 2, 1, 1];
    /// Whether post-processing keeps only the organ's largest pieces. The pancreas is thin and
    /// long, and predictions of it often come in pieces that are all pancreas: keeping only the
    /// largest piece cost 0.08 DSC on BTCV 0033 (0.426 -> 0.346) and gained nothing on 0031,
    /// while the other organs gained up to 0.03 (kidney, 0033). Measured 2026-11-27 with the
    /// bundled stage 1 step 700, stage 2 step 500.
    pub const KEEP_LARGEST_COMPONENTS: [bool; ORGAN_COUNT] = [true, true, true, false];
}

/// Report colours given to labels a card does not colour: Okabe and Ito's palette, FLARE21's
/// four first, then its other colours, repeating.
const PALETTE_RGB: [[u8; 3]; 7] = [
    flare21::COLOURS_RGB[0],
    flare21::COLOURS_RGB[1],
    flare21::COLOURS_RGB[2],
    flare21::COLOURS_RGB[3],
    [230, 159, 0],
    [0, 114, 178],
    [204, 121, 167],
];

/// Why a list of labels is not a label set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelSetError {
    /// The list does not start with background (value 0).
    #[error("the first label must be the background, value 0 (found {first:?})")]
    NoBackground {
        /// The first value listed, `None` for an empty list.
        first: Option<u8>,
    },
    /// A value listed twice.
    #[error("label value {value} is listed twice")]
    DuplicateValue {
        /// The value.
        value: u8,
    },
    /// A name used by two labels.
    #[error("label name {name:?} is used twice")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A label without a name.
    #[error("label {value} has no name")]
    EmptyName {
        /// The label's value.
        value: u8,
    },
    /// An organ with no connected piece to keep.
    #[error("label {value} ({name}) has 0 components; an organ has at least one piece")]
    NoComponents {
        /// The label's value.
        value: u8,
        /// Its name.
        name: String,
    },
}

/// One output class: its value in label maps, names, colour and rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LabelEntry")]
pub struct Label {
    /// The value written in label maps (= the network's output channel).
    pub value: u8,
    /// The name in model cards, training logs and CSV columns, e.g. `kidney`.
    pub name: String,
    /// The name in messages and reports, e.g. `kidneys` (label 2 of FLARE21 is both).
    pub display_name: String,
    /// Outline colour in reports and DICOM outputs, sRGB.
    pub colour_rgb: [u8; 3],
    /// Connected pieces the organ has (2 for the kidneys): stage 1 keeps that many around its
    /// box, post-processing keeps that many when [`Label::keep_largest_components`] is set.
    pub components: u8,
    /// After export, keep only the largest [`Label::components`] pieces.
    pub keep_largest_components: bool,
    /// After export, fill background pockets the organ encloses (organs are solid bodies).
    pub fill_holes: bool,
}

/// A label as a card stores it: `value` and `name` always, the rest absent in cards written
/// before label sets were stored.
#[derive(Deserialize)]
struct LabelEntry {
    value: u8,
    name: String,
    display_name: Option<String>,
    colour_rgb: Option<[u8; 3]>,
    components: Option<u8>,
    keep_largest_components: Option<bool>,
    fill_holes: Option<bool>,
}

impl TryFrom<LabelEntry> for Label {
    type Error = LabelSetError;

    fn try_from(e: LabelEntry) -> Result<Label, LabelSetError> {
        let legacy = Label::legacy(e.value, &e.name);
        let label = Label {
            display_name: e.display_name.unwrap_or(legacy.display_name),
            colour_rgb: e.colour_rgb.unwrap_or(legacy.colour_rgb),
            components: e.components.unwrap_or(legacy.components),
            keep_largest_components: e
                .keep_largest_components
                .unwrap_or(legacy.keep_largest_components),
            fill_holes: e.fill_holes.unwrap_or(legacy.fill_holes),
            value: e.value,
            name: e.name,
        };
        label.check()?;
        Ok(label)
    }
}

impl Label {
    /// The background class (value 0): no colour, no rules.
    pub fn background() -> Label {
        Label {
            value: 0,
            name: "background".into(),
            display_name: "background".into(),
            colour_rgb: [0, 0, 0],
            components: 0,
            keep_largest_components: false,
            fill_holes: false,
        }
    }

    /// An organ with the default rules: one piece, largest piece kept, holes filled, a colour
    /// from the report palette by value.
    pub fn organ(value: u8, name: &str) -> Label {
        Label {
            value,
            name: name.into(),
            display_name: name.into(),
            colour_rgb: default_colour(value),
            components: 1,
            keep_largest_components: true,
            fill_holes: true,
        }
    }

    /// The label a card from before stored label sets meant by `value` and `name`: FLARE21's
    /// label where both match it; otherwise what flare then decided from the name, for any
    /// card: two pieces when it contains "kidney", every piece kept when it contains
    /// "pancreas" (case-insensitive). Only old cards are read this way.
    pub fn legacy(value: u8, name: &str) -> Label {
        if let Some(l) = LabelSet::flare21()
            .labels
            .into_iter()
            .find(|l| l.value == value && l.name == name)
        {
            return l;
        }
        if value == 0 {
            return Label {
                name: name.into(),
                display_name: name.into(),
                ..Label::background()
            };
        }
        let lower = name.to_ascii_lowercase();
        Label {
            components: if lower.contains("kidney") { 2 } else { 1 },
            keep_largest_components: !lower.contains("pancreas"),
            ..Label::organ(value, name)
        }
    }

    /// Whether this is the background (value 0).
    pub fn is_background(&self) -> bool {
        self.value == 0
    }

    /// [`Label::display_name`] with its first letter upper-case, for headings (`Kidneys`).
    pub fn title(&self) -> String {
        let mut chars = self.display_name.chars();
        match chars.next() {
            Some(c) => c.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    }

    fn check(&self) -> Result<(), LabelSetError> {
        if self.name.trim().is_empty() {
            return Err(LabelSetError::EmptyName { value: self.value });
        }
        if !self.is_background() && self.components == 0 {
            return Err(LabelSetError::NoComponents {
                value: self.value,
                name: self.name.clone(),
            });
        }
        Ok(())
    }
}

/// The palette colour of organ `value` (black for the background).
fn default_colour(value: u8) -> [u8; 3] {
    match value {
        0 => [0, 0, 0],
        v => PALETTE_RGB[usize::from(v - 1) % PALETTE_RGB.len()],
    }
}

/// A model's output classes, background first, each with its names and rules (see the crate
/// doc). In a card it is the `labels` list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Label>", into = "Vec<Label>")]
pub struct LabelSet {
    labels: Vec<Label>,
}

impl TryFrom<Vec<Label>> for LabelSet {
    type Error = LabelSetError;

    fn try_from(labels: Vec<Label>) -> Result<LabelSet, LabelSetError> {
        LabelSet::new(labels)
    }
}

impl From<LabelSet> for Vec<Label> {
    fn from(set: LabelSet) -> Vec<Label> {
        set.labels
    }
}

impl Default for LabelSet {
    /// [`LabelSet::flare21`].
    fn default() -> Self {
        LabelSet::flare21()
    }
}

impl LabelSet {
    /// A label set from its classes, background (value 0) first; values and names unique.
    pub fn new(labels: Vec<Label>) -> Result<LabelSet, LabelSetError> {
        match labels.first() {
            Some(l) if l.is_background() => {}
            first => {
                return Err(LabelSetError::NoBackground {
                    first: first.map(|l| l.value),
                });
            }
        }
        let (mut values, mut names) = (BTreeSet::new(), BTreeSet::new());
        for l in &labels {
            l.check()?;
            if !values.insert(l.value) {
                return Err(LabelSetError::DuplicateValue { value: l.value });
            }
            if !names.insert(l.name.as_str()) {
                return Err(LabelSetError::DuplicateName {
                    name: l.name.clone(),
                });
            }
        }
        Ok(LabelSet { labels })
    }

    /// FLARE21's classes: background, 1 liver, 2 kidney (both kidneys, two pieces), 3 spleen,
    /// 4 pancreas (left in pieces by post-processing); see [`flare21`].
    pub fn flare21() -> LabelSet {
        let organs = (0..flare21::ORGAN_COUNT).map(|o| Label {
            value: o as u8 + 1,
            name: flare21::NAMES[o].into(),
            display_name: flare21::DISPLAY_NAMES[o].into(),
            colour_rgb: flare21::COLOURS_RGB[o],
            components: flare21::COMPONENTS[o],
            keep_largest_components: flare21::KEEP_LARGEST_COMPONENTS[o],
            fill_holes: true,
        });
        LabelSet {
            labels: std::iter::once(Label::background()).chain(organs).collect(),
        }
    }

    /// Every class, background first.
    pub fn all(&self) -> &[Label] {
        &self.labels
    }

    /// The organs: every class but the background, in the set's order.
    pub fn organs(&self) -> &[Label] {
        &self.labels[1..]
    }

    /// The class with value `value`.
    pub fn get(&self, value: u8) -> Option<&Label> {
        self.labels.iter().find(|l| l.value == value)
    }

    /// The organs' names ([`Label::name`]), in order.
    pub fn organ_names(&self) -> Vec<&str> {
        self.organs().iter().map(|l| l.name.as_str()).collect()
    }

    /// Classes in the set, background included.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always `false`: a set holds at least the background.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The classes' values, background first.
    pub fn values(&self) -> Vec<u8> {
        self.labels.iter().map(|l| l.value).collect()
    }

    /// Whether the organs are FLARE21's four, with FLARE21's values and names, in order (what
    /// FLARE21-only formats such as the official evaluation CSV need).
    pub fn has_flare21_organs(&self) -> bool {
        self.organs().len() == flare21::ORGAN_COUNT
            && self
                .organs()
                .iter()
                .zip(flare21::NAMES)
                .enumerate()
                .all(|(o, (l, name))| usize::from(l.value) == o + 1 && l.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flare21_holds_the_task_labels_and_rules() {
        let s = LabelSet::flare21();
        assert_eq!(s.values(), [0, 1, 2, 3, 4]);
        assert_eq!(s.organ_names(), ["liver", "kidney", "spleen", "pancreas"]);
        let k = s.get(2).unwrap();
        assert_eq!((k.components, k.display_name.as_str()), (2, "kidneys"));
        assert_eq!(k.title(), "Kidneys");
        let p = s.get(4).unwrap();
        assert!(!p.keep_largest_components && p.fill_holes);
        assert!(s.get(1).unwrap().keep_largest_components);
        assert!(s.get(5).is_none());
        assert!(s.has_flare21_organs());
        assert_eq!(LabelSet::default(), s);
    }

    #[test]
    fn serde_round_trip_keeps_every_field() {
        let mut labels = LabelSet::flare21().all().to_vec();
        labels[3].colour_rgb = [1, 2, 3];
        labels[4].fill_holes = false;
        labels.push(Label {
            components: 3,
            ..Label::organ(9, "gallbladder")
        });
        let s = LabelSet::new(labels).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: LabelSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert!(json.contains("\"keep_largest_components\":false"), "{json}");
    }

    #[test]
    fn an_old_cards_list_maps_onto_flare21() {
        let old = r#"[{"value":0,"name":"background"},{"value":1,"name":"liver"},
            {"value":2,"name":"kidney"},{"value":3,"name":"spleen"},{"value":4,"name":"pancreas"}]"#;
        let s: LabelSet = serde_json::from_str(old).unwrap();
        assert_eq!(s, LabelSet::flare21());
    }

    #[test]
    fn old_cards_with_other_names_keep_the_old_name_rule() {
        let old = r#"[{"value":0,"name":"bg"},{"value":1,"name":"Left Kidney"},
            {"value":2,"name":"pancreas head"},{"value":3,"name":"aorta"}]"#;
        let s: LabelSet = serde_json::from_str(old).unwrap();
        assert_eq!(s.get(0).unwrap().name, "bg");
        let kidney = s.get(1).unwrap();
        assert_eq!(
            (kidney.components, kidney.keep_largest_components),
            (2, true)
        );
        let pancreas = s.get(2).unwrap();
        assert_eq!(
            (pancreas.components, pancreas.keep_largest_components),
            (1, false)
        );
        let aorta = s.get(3).unwrap();
        assert_eq!(
            (
                aorta.components,
                aorta.keep_largest_components,
                aorta.fill_holes
            ),
            (1, true, true)
        );
        assert_eq!(aorta.colour_rgb, flare21::COLOURS_RGB[2]);
        // A FLARE21 value under another name is not taken for FLARE21's label.
        let renamed: LabelSet = serde_json::from_str(
            r#"[{"value":0,"name":"background"},{"value":4,"name":"tumour"}]"#,
        )
        .unwrap();
        assert!(renamed.get(4).unwrap().keep_largest_components);
    }

    #[test]
    fn rules_stated_in_a_card_win_over_names() {
        let json = r#"[{"value":0,"name":"background"},
            {"value":1,"name":"kidney","components":1,"keep_largest_components":false}]"#;
        let s: LabelSet = serde_json::from_str(json).unwrap();
        let k = s.get(1).unwrap();
        assert_eq!((k.components, k.keep_largest_components), (1, false));
    }

    #[test]
    fn a_two_label_set_is_its_own() {
        let s = LabelSet::new(vec![
            Label::background(),
            Label::organ(1, "tumour"),
            Label::organ(2, "cyst"),
        ])
        .unwrap();
        assert_eq!(s.organ_names(), ["tumour", "cyst"]);
        assert!(!s.has_flare21_organs());
        assert_eq!(s.get(2).unwrap().colour_rgb, flare21::COLOURS_RGB[1]);
    }

    #[test]
    fn bad_sets_are_refused() {
        let bg = Label::background;
        let organ = Label::organ;
        let cases = [
            (vec![], LabelSetError::NoBackground { first: None }),
            (
                vec![organ(1, "liver")],
                LabelSetError::NoBackground { first: Some(1) },
            ),
            (
                vec![bg(), organ(1, "a"), organ(1, "b")],
                LabelSetError::DuplicateValue { value: 1 },
            ),
            (
                vec![bg(), organ(1, "a"), organ(2, "a")],
                LabelSetError::DuplicateName { name: "a".into() },
            ),
            (
                vec![bg(), organ(1, " ")],
                LabelSetError::EmptyName { value: 1 },
            ),
            (
                vec![
                    bg(),
                    Label {
                        components: 0,
                        ..organ(3, "x")
                    },
                ],
                LabelSetError::NoComponents {
                    value: 3,
                    name: "x".into(),
                },
            ),
        ];
        for (labels, want) in cases {
            assert_eq!(LabelSet::new(labels).unwrap_err(), want);
        }
        let e = serde_json::from_str::<LabelSet>(r#"[{"value":1,"name":"liver"}]"#).unwrap_err();
        assert!(e.to_string().contains("background"), "{e}");
    }
}
