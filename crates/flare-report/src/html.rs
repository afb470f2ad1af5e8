//! The batch's index.html: a legend, one table row per case, and each case's overlay.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use flare_labels::LabelSet;

use crate::{atomic::write_atomic, error::Result};

/// How a case of the batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseStatus {
    /// Segmented.
    Done,
    /// Not processed, with the reason (e.g. "output exists; --overwrite to redo").
    Skipped(String),
    /// Processing failed, with the error.
    Failed(String),
}

/// One case's line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseEntry {
    /// Case name (FLARE naming: the input's name without `_0000.nii.gz`).
    pub name: String,
    /// The input file or folder, as given.
    pub input: String,
    /// The label map written, if any.
    pub output: Option<String>,
    /// How the case ended.
    pub status: CaseStatus,
    /// Each organ's volume in mL, in the order of the label set's organs (FLARE21: liver,
    /// kidneys, spleen, pancreas).
    pub volumes_ml: Option<Vec<f64>>,
    /// Wall time of the case in seconds.
    pub wall_s: Option<f64>,
    /// Peak resident memory while processing the case, in MB.
    pub peak_rss_mb: Option<f64>,
    /// The overlay picture, relative to the report folder.
    pub png: Option<String>,
    /// Anything a reader should know (post-processing effects, a picture not written).
    pub notes: Vec<String>,
    /// Plausibility warnings: the input does not look like an abdominal CT, or an organ is
    /// missing, too small, too large or misplaced. Shown in red in the table and above the
    /// case's picture.
    pub warnings: Vec<String>,
}

/// Writes `dir/index.html` for a batch: a title, a colour legend (the organs of `labels`, in
/// their colours), a table (case, status, volumes in mL per organ, wall s, peak RSS MB, warnings and notes), and each case's overlay below (lazy-loaded
/// images). Self-contained (inline CSS, no scripts); every text is escaped; written atomically;
/// `dir` is created if missing. Returns the path of the file.
pub fn write_index_html(
    dir: &Path,
    title: &str,
    model: &str,
    labels: &LabelSet,
    cases: &[CaseEntry],
) -> Result<PathBuf> {
    let path = dir.join("index.html");
    write_atomic(&path, render_index(title, model, labels, cases).as_bytes())?;
    Ok(path)
}

/// Text made safe for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&#39;"),
            _ => s.push(c),
        }
    }
    s
}

/// A relative file path as a URL path: bytes other than unreserved characters and `/` are
/// percent-encoded, so `#`, `?`, `%` and spaces in case names still reach the file. Backslashes
/// become `/` (a path written on Windows).
fn url_path(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                s.push(char::from(b))
            }
            b'\\' => s.push('/'),
            _ => {
                let _ = write!(s, "%{b:02X}");
            }
        }
    }
    s
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn number(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        Some(_) => "?".to_string(),
        None => "\u{2013}".to_string(),
    }
}

const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{margin:0 0 .2em}
.meta{color:#555;margin:0 0 1em}
.legend{display:flex;flex-wrap:wrap;gap:1.2em;align-items:center;margin:0 0 .4em}
.sw{display:inline-block;width:1.1em;height:1.1em;border-radius:2px;vertical-align:middle;margin-right:.3em}
.how{color:#444;max-width:60em;margin:0 0 1em}
table{border-collapse:collapse;font-size:.95em}
th,td{border:1px solid #ccc;padding:.25em .6em}
th{background:#eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.zero{background:#fde2e2;font-weight:bold}
tr.failed td{background:#fde2e2}
tr.skipped td{color:#777}
.warn{color:#b42318;font-weight:bold}
.st-done{color:#1a7f37}.st-failed{color:#b42318;font-weight:bold}.st-skipped{color:#777}
section{margin:2em 0}
section h2{font-size:1.1em;margin:0 0 .2em}
section p{margin:0 0 .4em;color:#555;word-break:break-all}
img{display:block;max-width:100%;height:auto;background:#303030}
";

fn render_index(title: &str, model: &str, labels: &LabelSet, cases: &[CaseEntry]) -> String {
    let t = escape(title);
    let count = |f: fn(&CaseStatus) -> bool| cases.iter().filter(|c| f(&c.status)).count();
    let done = count(|s| matches!(s, CaseStatus::Done));
    let skipped = count(|s| matches!(s, CaseStatus::Skipped(_)));
    let failed = count(|s| matches!(s, CaseStatus::Failed(_)));
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<h1>{t}</h1>\n\
         <p class=\"meta\">Model: {}. {} case{}: {done} done, {skipped} skipped, {failed} failed.</p>\n",
        escape(model),
        cases.len(),
        if cases.len() == 1 { "" } else { "s" },
    );
    h.push_str("<div class=\"legend\">");
    for organ in labels.organs() {
        let _ = write!(
            h,
            "<span><span class=\"sw\" style=\"background:{}\"></span>{}</span>",
            hex(organ.colour_rgb),
            escape(&organ.title())
        );
    }
    h.push_str("</div>\n");
    h.push_str(
        "<p class=\"how\">Each picture has one row per organ found (its colour in the bar at the \
         row's left): axial, coronal and sagittal slices through that organ, with every organ's \
         outline in its colour. Radiological convention: the patient's right is on the image's \
         left; anterior is up in axial; superior is up in coronal and sagittal; anterior is on \
         the left in sagittal. Pixels are square (true proportions), one scale per case. \
         Volumes in red are zero: the organ was not found.</p>\n",
    );

    h.push_str("<table>\n<thead><tr><th>Case</th><th>Status</th>");
    for organ in labels.organs() {
        let _ = write!(h, "<th>{} mL</th>", escape(&organ.title()));
    }
    h.push_str("<th>Wall s</th><th>Peak RSS MB</th><th>Notes</th></tr></thead>\n<tbody>\n");
    for (n, case) in cases.iter().enumerate() {
        let (class, status) = match &case.status {
            CaseStatus::Done => ("done", "done".to_string()),
            CaseStatus::Skipped(why) => ("skipped", format!("skipped: {}", escape(why))),
            CaseStatus::Failed(why) => ("failed", format!("failed: {}", escape(why))),
        };
        let _ = write!(
            h,
            "<tr class=\"{class}\"><td><a href=\"#case-{n}\">{}</a></td><td class=\"st-{class}\">{status}</td>",
            escape(&case.name)
        );
        for o in 0..labels.organs().len() {
            let v = case.volumes_ml.as_ref().and_then(|v| v.get(o).copied());
            // A zero volume in a finished case means the organ was missed: make it stand out.
            let zero = matches!(case.status, CaseStatus::Done) && v == Some(0.0);
            let _ = write!(
                h,
                "<td class=\"n{}\">{}</td>",
                if zero { " zero" } else { "" },
                number(v, 1)
            );
        }
        let notes: Vec<String> = case
            .warnings
            .iter()
            .map(|s| format!("<span class=\"warn\">warning: {}</span>", escape(s)))
            .chain(case.notes.iter().map(|s| escape(s)))
            .collect();
        let _ = writeln!(
            h,
            "<td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            number(case.wall_s, 2),
            number(case.peak_rss_mb, 0),
            notes.join("<br>")
        );
    }
    h.push_str("</tbody>\n</table>\n");

    for (n, case) in cases.iter().enumerate() {
        let name = escape(&case.name);
        let _ = write!(
            h,
            "<section id=\"case-{n}\">\n<h2>{name}</h2>\n<p>{}{}</p>\n",
            escape(&case.input),
            case.output
                .as_deref()
                .map(|o| format!(" \u{2192} {}", escape(o)))
                .unwrap_or_default()
        );
        for w in &case.warnings {
            let _ = writeln!(h, "<p class=\"warn\">warning: {}</p>", escape(w));
        }
        match (&case.png, &case.status) {
            (Some(png), _) => {
                let _ = writeln!(
                    h,
                    "<img loading=\"lazy\" src=\"{}\" alt=\"{name}: organ outlines on axial, coronal and sagittal slices\">",
                    escape(&url_path(png))
                );
            }
            (None, CaseStatus::Failed(why)) => {
                let _ = writeln!(h, "<p>No picture: failed: {}</p>", escape(why));
            }
            (None, CaseStatus::Skipped(why)) => {
                let _ = writeln!(h, "<p>No picture: skipped: {}</p>", escape(why));
            }
            (None, CaseStatus::Done) => h.push_str("<p>No picture.</p>\n"),
        }
        h.push_str("</section>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}
