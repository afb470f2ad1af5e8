//! The batch index.html through the public API: escaping, every case listed, pictures linked.

use std::path::Path;

use flare_report::{
    CaseEntry, CaseStatus, Label, LabelSet, ORGAN_COLOURS, OverlayOptions, write_index_html,
    write_overlay_png,
};
use flare_testkit::TempDir;
use flare_volume::{Geometry, Volume};

fn case(name: &str, status: CaseStatus) -> CaseEntry {
    CaseEntry {
        name: name.to_string(),
        input: format!("in/{name}_0000.nii.gz"),
        output: Some(format!("out/{name}.nii.gz")),
        status,
        volumes_ml: Some(vec![1523.25, 301.0, 180.44, 0.0]),
        wall_s: Some(3.456),
        peak_rss_mb: Some(812.6),
        png: Some(format!("{name}.png")),
        notes: vec!["kept 2 of 5 kidney components".to_string()],
        warnings: Vec::new(),
    }
}

#[test]
fn index_lists_every_case_and_escapes_all_text() {
    let dir = TempDir::new("report-html");
    let hostile = "<script>alert('x')</script> & \"co\"";
    let mut failed = case(
        "bad_case",
        CaseStatus::Failed("truncated gzip <eof>".into()),
    );
    failed.png = None;
    failed.volumes_ml = None;
    failed.wall_s = None;
    failed.peak_rss_mb = None;
    let mut odd = case(hostile, CaseStatus::Done);
    odd.warnings = vec!["liver 92 mL <small>".to_string()];
    let cases = vec![
        case("case_001", CaseStatus::Done),
        odd,
        failed,
        case("old one", CaseStatus::Skipped("output exists".into())),
    ];
    let path = write_index_html(
        dir.path(),
        "Batch <1>",
        "flare-default v1 <tiny>",
        &LabelSet::flare21(),
        &cases,
    )
    .expect("write");
    assert_eq!(path, dir.join("index.html"));
    let html = std::fs::read_to_string(&path).expect("read");

    assert!(!html.contains("<script"), "unescaped script tag");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot;"));
    assert!(html.contains("<title>Batch &lt;1&gt;</title>"));
    assert!(html.contains("flare-default v1 &lt;tiny&gt;"));
    assert!(html.contains("truncated gzip &lt;eof&gt;"));
    // A plausibility warning: in the table and above the case's picture, in red, escaped.
    assert_eq!(
        html.matches("class=\"warn\">warning: liver 92 mL &lt;small&gt;<")
            .count(),
        2
    );
    // One table row per case plus the header, and one section per case.
    assert_eq!(html.matches("<tr").count(), cases.len() + 1);
    assert_eq!(html.matches("<section").count(), cases.len());
    assert!(html.contains("4 cases: 2 done, 1 skipped, 1 failed"));
    // Volumes to 0.1 mL, time to 0.01 s, memory to 1 MB; a missed organ stands out.
    for text in ["1523.2", "301.0", "180.4", "3.46", "813"] {
        assert!(html.contains(text), "{text} missing");
    }
    assert!(html.contains("<td class=\"n zero\">0.0</td>"));
    // Pictures are lazy-loaded and their names URL-encoded (a space, quotes, <, >).
    assert!(html.contains("<img loading=\"lazy\" src=\"case_001.png\""));
    assert!(html.contains("src=\"old%20one.png\""));
    assert_eq!(html.matches("<img ").count(), 3);
    // The legend shows each organ colour.
    for c in ORGAN_COLOURS {
        let hex = format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]);
        assert!(html.contains(&hex), "{hex} missing from the legend");
    }
    // Self-contained: no external stylesheet or script.
    assert!(!html.contains("<link") && !html.contains("http"));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("index.html")]);
}

#[test]
fn overlay_and_index_together_link_the_picture() {
    let dir = TempDir::new("report-batch");
    let g = Geometry::axis_aligned([20, 20, 10], [1.5, 1.5, 3.0], [0.0; 3]).expect("geometry");
    let mut labels = vec![0u8; g.n_voxels()];
    for k in 3..7 {
        for j in 5..15 {
            for i in 4..12 {
                labels[g.linear_index([i, j, k])] = 1;
            }
        }
    }
    let ct = Volume::filled(g, 40.0f32);
    let labels = Volume::new(g, labels).expect("labels");
    let png = "pictures/case 7.png";
    let info = write_overlay_png(&ct, &labels, &dir.join(png), &OverlayOptions::default())
        .expect("overlay");
    assert_eq!(info.organs_shown, vec![1]);
    let mut entry = case("case 7", CaseStatus::Done);
    entry.png = Some(png.to_string());
    let index =
        write_index_html(dir.path(), "one", "m", &LabelSet::flare21(), &[entry]).expect("index");
    let html = std::fs::read_to_string(&index).expect("read");
    let src = html
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("img src");
    assert_eq!(src, "pictures/case%207.png");
    assert!(Path::new(&dir.join("pictures/case 7.png")).is_file());
}

#[test]
fn unwritable_report_folder_is_an_error_naming_it() {
    let dir = TempDir::new("report-html-err");
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let e = write_index_html(&file.join("report"), "t", "m", &LabelSet::flare21(), &[])
        .expect_err("unwritable");
    assert!(e.to_string().contains(&file.display().to_string()), "{e}");
}

/// Another label set (two organs, values 1 and 7): the legend, the table's columns and the
/// picture's rows and colours are its own, FLARE21's names appear nowhere.
#[test]
fn a_two_organ_label_set_names_the_report() {
    let dir = TempDir::new("report-two-labels");
    let set = LabelSet::new(vec![
        Label::background(),
        Label {
            display_name: "liver tumour".into(),
            colour_rgb: [1, 2, 250],
            ..Label::organ(1, "tumour")
        },
        Label::organ(7, "cyst"),
    ])
    .expect("set");
    let g = Geometry::axis_aligned([20, 20, 10], [1.5, 1.5, 3.0], [0.0; 3]).expect("geometry");
    let mut labels = vec![0u8; g.n_voxels()];
    for k in 3..7 {
        for j in 5..15 {
            labels[g.linear_index([5, j, k])] = 7;
            labels[g.linear_index([6, j, k])] = 7;
            labels[g.linear_index([12, j, k])] = 2; // not an organ of this set
        }
    }
    let ct = Volume::filled(g, 40.0f32);
    let labels = Volume::new(g, labels).expect("labels");
    let opts = OverlayOptions {
        labels: set.clone(),
        ..OverlayOptions::default()
    };
    let info = write_overlay_png(&ct, &labels, &dir.join("c.png"), &opts).expect("overlay");
    assert_eq!(info.organs_shown, vec![7]);
    let mut entry = case("c", CaseStatus::Done);
    entry.volumes_ml = Some(vec![0.0, 12.5]);
    let html = std::fs::read_to_string(
        write_index_html(dir.path(), "two", "m", &set, &[entry]).expect("index"),
    )
    .expect("read");
    assert!(html.contains("<th>Liver tumour mL</th><th>Cyst mL</th><th>Wall s</th>"));
    assert!(
        html.contains("#0102fa"),
        "tumour colour missing from the legend"
    );
    assert!(html.contains("<td class=\"n zero\">0.0</td><td class=\"n\">12.5</td>"));
    for flare in ["Liver mL", "Kidneys", "Spleen", "Pancreas"] {
        assert!(!html.contains(flare), "{flare} in a two-organ report");
    }
}
