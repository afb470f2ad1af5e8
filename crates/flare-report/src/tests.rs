//! Tests of the overlay's display geometry, outlines and layout on synthetic phantoms whose
//! expected pictures follow from anatomy and arithmetic, not from this code.

use std::path::Path;

use flare_volume::{Geometry, LabelMap, Volume};

use crate::{
    ORGAN_COLOURS, OverlayOptions,
    overlay::{PanelRect, Picture, render},
    write_overlay_png,
};

/// A CT and label map whose voxels take their values from the world position of their centre.
fn phantom(geometry: Geometry, f: impl Fn([f64; 3]) -> (f32, u8)) -> (Volume<f32>, LabelMap) {
    let [nx, ny, nz] = geometry.shape();
    let mut ct = Vec::with_capacity(geometry.n_voxels());
    let mut lab = Vec::with_capacity(geometry.n_voxels());
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let (hu, l) = f(geometry.index_to_world([i as f64, j as f64, k as f64]));
                ct.push(hu);
                lab.push(l);
            }
        }
    }
    (
        Volume::new(geometry, ct).expect("ct"),
        Volume::new(geometry, lab).expect("labels"),
    )
}

fn draw(ct: &Volume<f32>, lab: &LabelMap) -> Picture {
    render(ct, lab, Path::new("test.png"), &OverlayOptions::default()).expect("render")
}

fn is_grey(c: [u8; 3]) -> bool {
    c[0] == c[1] && c[1] == c[2]
}

/// Pixels of a panel for which `keep` holds, as panel coordinates.
fn pixels(p: &Picture, r: PanelRect, keep: impl Fn([u8; 3]) -> bool) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for y in 0..r.height {
        for x in 0..r.width {
            if keep(p.pixel(r.x + x, r.y + y)) {
                v.push((x, y));
            }
        }
    }
    v
}

/// Centre of a set of pixels as fractions of the panel's width and height.
fn centre_fraction(px: &[(usize, usize)], r: PanelRect) -> (f64, f64) {
    assert!(!px.is_empty(), "no pixels found in panel {r:?}");
    let n = px.len() as f64;
    let mx = px.iter().map(|p| p.0 as f64 + 0.5).sum::<f64>() / n;
    let my = px.iter().map(|p| p.1 as f64 + 0.5).sum::<f64>() / n;
    (mx / r.width as f64, my / r.height as f64)
}

/// Bounding box (width, height) in pixels.
fn bbox(px: &[(usize, usize)]) -> (usize, usize) {
    let x0 = px.iter().map(|p| p.0).min().expect("pixels");
    let x1 = px.iter().map(|p| p.0).max().expect("pixels");
    let y0 = px.iter().map(|p| p.1).min().expect("pixels");
    let y1 = px.iter().map(|p| p.1).max().expect("pixels");
    (x1 - x0 + 1, y1 - y0 + 1)
}

fn rotation(axis: [f64; 3], degrees: f64) -> [[f64; 3]; 3] {
    let n = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).sqrt();
    let [x, y, z] = axis.map(|a| a / n);
    let (s, c) = degrees.to_radians().sin_cos();
    let t = 1.0 - c;
    [
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ]
}

fn matmul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for (r, row) in m.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[r][k] * b[k][c]).sum();
        }
    }
    m
}

/// A grid centred on the world origin: `direction` columns per array axis.
fn centred(shape: [usize; 3], spacing: [f64; 3], direction: [[f64; 3]; 3]) -> Geometry {
    let mut origin = [0.0; 3];
    for (r, o) in origin.iter_mut().enumerate() {
        *o = -(0..3)
            .map(|a| direction[r][a] * spacing[a] * (shape[a] as f64 - 1.0) / 2.0)
            .sum::<f64>();
    }
    Geometry::new(shape, spacing, origin, direction).expect("geometry")
}

/// The field of view is 120 mm R-L, 80 mm A-P and 160 mm S-I around the world origin (three
/// different lengths, so a swapped axis changes a panel's shape). A bright block, labelled
/// liver, sits 20% of the way in from the patient's right, 35% from the front, 10% from the
/// top: at (x, y, z) = (36, 12, 64) mm in RAS+.
fn marker(xyz: [f64; 3]) -> (f32, u8) {
    let inside = (xyz[0] - 36.0).abs() <= 6.0
        && (xyz[1] - 12.0).abs() <= 6.0
        && (xyz[2] - 64.0).abs() <= 6.0;
    if inside { (1000.0, 1) } else { (0.0, 0) }
}

const IDENTITY: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// The same field of view stored in different orientations; the code each is known by.
fn marker_grids() -> Vec<(&'static str, Geometry, f64)> {
    let lps = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
    // Acquired coronally: axis 0 to the left, axis 1 inferior, axis 2 anterior.
    let lia = [[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]];
    // Axes permuted and reversed (inferior, left, posterior), anisotropic voxels, and tilted
    // 4 degrees about an oblique axis: shown along its nearest axes, so the marker moves a
    // little (the rotation about the grid centre moves it by up to ~5 mm).
    let ilp = [[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]];
    let oblique = matmul(rotation([1.0, 2.0, 3.0], 4.0), ilp);
    vec![
        (
            "RAS",
            centred([60, 40, 80], [2.0, 2.0, 2.0], IDENTITY),
            0.03,
        ),
        ("LPS", centred([60, 40, 80], [2.0, 2.0, 2.0], lps), 0.03),
        ("LIA", centred([60, 80, 40], [2.0, 2.0, 2.0], lia), 0.03),
        ("ILP", centred([64, 80, 40], [2.5, 1.5, 2.0], oblique), 0.06),
    ]
}

#[test]
fn marker_lands_in_the_same_place_whatever_the_file_orientation() {
    // Radiological convention, from the marker's anatomy: axial shows R-L across (right on the
    // left) and A-P down; coronal R-L across and S-I down; sagittal A-P across and S-I down.
    let expected = [(0.20, 0.35), (0.20, 0.10), (0.35, 0.10)];
    // 160 mm (the longest side) fills 256 px: 0.625 mm per pixel.
    let expected_sizes = [(192, 128), (192, 256), (128, 256)];
    let mut ras_rgb: Option<Vec<u8>> = None;
    for (code, geometry, tol) in marker_grids() {
        assert_eq!(geometry.orientation().to_string(), code);
        let (ct, lab) = phantom(geometry, marker);
        let pic = draw(&ct, &lab);
        assert_eq!(pic.rows.len(), 1, "{code}");
        assert_eq!(pic.rows[0].organ, Some(1), "{code}");
        for (p, rect) in pic.rows[0].panels.iter().enumerate() {
            assert_eq!(
                (rect.width, rect.height),
                expected_sizes[p],
                "{code} panel {p}"
            );
            let bright = pixels(&pic, *rect, |c| {
                c == ORGAN_COLOURS[0] || (is_grey(c) && c[0] > 200)
            });
            let (fx, fy) = centre_fraction(&bright, *rect);
            let (ex, ey) = expected[p];
            assert!(
                (fx - ex).abs() <= tol && (fy - ey).abs() <= tol,
                "{code} panel {p}: marker at ({fx:.3}, {fy:.3}), expected ({ex}, {ey})"
            );
        }
        // Grids holding the same voxel centres give the same picture, up to the rounding of
        // bilinear weights computed from the other end.
        if code == "RAS" {
            ras_rgb = Some(pic.rgb.clone());
        } else if code == "LPS" || code == "LIA" {
            let ras = ras_rgb.as_ref().expect("RAS first");
            assert_eq!(ras.len(), pic.rgb.len());
            let worst = ras.iter().zip(&pic.rgb).map(|(a, b)| a.abs_diff(*b)).max();
            assert!(worst <= Some(1), "{code} differs from RAS by {worst:?}");
        }
    }
}

/// A sphere of radius 40 mm at the centre of a thick-slice scan (0.7 x 0.7 x 5 mm).
fn thick_slice_sphere() -> (Volume<f32>, LabelMap) {
    let g = centred([160, 160, 24], [0.7, 0.7, 5.0], IDENTITY);
    phantom(g, |p| {
        if p[0] * p[0] + p[1] * p[1] + p[2] * p[2] <= 40.0 * 40.0 {
            (60.0, 1)
        } else {
            (-100.0, 0)
        }
    })
}

#[test]
fn sphere_in_anisotropic_voxels_is_round() {
    let (ct, lab) = thick_slice_sphere();
    let pic = draw(&ct, &lab);
    // Fields of view 112 x 112 x 120 mm; 120 mm fills 256 px.
    let pixel_mm = 120.0 / 256.0;
    for (p, rect) in pic.rows[0].panels.iter().enumerate() {
        let outline = pixels(&pic, *rect, |c| c == ORGAN_COLOURS[0]);
        let (w, h) = bbox(&outline);
        let aspect = w as f64 / h as f64;
        assert!((0.9..=1.1).contains(&aspect), "panel {p}: {w} x {h} px");
        for side in [w, h] {
            let mm = side as f64 * pixel_mm;
            assert!(
                (mm - 80.0).abs() <= 8.0,
                "panel {p}: diameter {mm} mm, expected 80"
            );
        }
    }
    // The coronal panel is 112 mm wide, 120 mm high.
    let cor = pic.rows[0].panels[1];
    assert_eq!((cor.width, cor.height), (239, 256));
}

#[test]
fn outline_is_thin_and_coloured_interior_is_grey_ct() {
    let (ct, lab) = thick_slice_sphere();
    let pic = draw(&ct, &lab);
    let ax = pic.rows[0].panels[0];
    let y = ax.height / 2;
    let row: Vec<[u8; 3]> = (0..ax.width)
        .map(|x| pic.pixel(ax.x + x, ax.y + y))
        .collect();
    let first = row
        .iter()
        .position(|&c| !is_grey(c))
        .expect("outline on the middle row");
    let run = row[first..].iter().take_while(|&&c| !is_grey(c)).count();
    assert!((1..=2).contains(&run), "outline {run} px thick");
    assert!(
        row[first..first + run]
            .iter()
            .all(|&c| c == ORGAN_COLOURS[0])
    );
    // Inside: 60 HU in the [-160, 240] window is 220/400 of white = 140; outside -100 HU is 38.
    assert_eq!(row[ax.width / 2], [140; 3]);
    assert_eq!(row[first - 1], [38; 3]);
    // Not a filled mask: the outline covers a small part of the disc (2 px of a ~170 px disc).
    let coloured = pixels(&pic, ax, |c| !is_grey(c)).len();
    let grey_inside = pixels(&pic, ax, |c| c == [140; 3]).len();
    assert!(
        coloured * 5 < grey_inside,
        "{coloured} outline px, {grey_inside} interior px"
    );
}

#[test]
fn one_row_per_organ_present_in_organ_order() {
    let g = centred([50, 40, 30], [2.0, 2.0, 3.0], IDENTITY);
    let ball = |p: [f64; 3], c: [f64; 3], r: f64| {
        (0..3).map(|a| (p[a] - c[a]).powi(2)).sum::<f64>() <= r * r
    };
    // Pancreas and spleen only; organ order decides the rows, not label values' frequency.
    let (ct, lab) = phantom(g, |p| {
        if ball(p, [-20.0, 0.0, 0.0], 12.0) {
            (50.0, 4)
        } else if ball(p, [20.0, 0.0, 10.0], 8.0) {
            (50.0, 3)
        } else {
            (0.0, 0)
        }
    });
    let pic = draw(&ct, &lab);
    let organs: Vec<_> = pic.rows.iter().map(|r| r.organ).collect();
    assert_eq!(organs, vec![Some(3), Some(4)]);
    // Each row's bar has its organ's colour; rows do not overlap.
    for row in &pic.rows {
        let c = ORGAN_COLOURS[usize::from(row.organ.expect("organ")) - 1];
        let p = row.panels[0];
        assert_eq!(pic.pixel(crate::overlay::GAP_PX + 1, p.y + p.height / 2), c);
    }
    let (upper, lower) = (pic.rows[0].panels[1], pic.rows[1].panels[1]);
    assert!(
        upper.y + upper.height < lower.y,
        "{upper:?} overlaps {lower:?}"
    );
    // The spleen row's axial slice goes through the spleen's centre (z = 10 mm), the pancreas
    // row's through z = 0: world z of slice k is -43.5 + 3 k.
    let z = |k: usize| -43.5 + 3.0 * k as f64;
    assert!((z(pic.rows[0].slices[0]) - 10.0).abs() <= 1.5);
    assert!((z(pic.rows[1].slices[0]) - 0.0).abs() <= 1.5);
}

#[test]
fn kidneys_row_cuts_through_a_kidney_not_between_them() {
    let g = centred([60, 40, 40], [2.0, 2.0, 2.0], IDENTITY);
    let (ct, lab) = phantom(g, |p| {
        let kidney = |cx: f64| {
            (p[0] - cx).powi(2) / 100.0 + p[1].powi(2) / 64.0 + p[2].powi(2) / 225.0 <= 1.0
        };
        if kidney(-35.0) || kidney(35.0) {
            (30.0, 2)
        } else {
            (0.0, 0)
        }
    });
    let pic = draw(&ct, &lab);
    assert_eq!(pic.rows.len(), 1);
    for (p, rect) in pic.rows[0].panels.iter().enumerate() {
        let n = pixels(&pic, *rect, |c| c == ORGAN_COLOURS[1]).len();
        assert!(n > 10, "panel {p} shows no kidney ({n} px)");
    }
}

#[test]
fn empty_label_map_gives_one_row_through_the_centre() {
    let g = centred([21, 31, 11], [1.0, 1.0, 3.0], IDENTITY);
    let (ct, lab) = phantom(g, |p| (p[0] as f32, 0));
    let pic = draw(&ct, &lab);
    assert_eq!(pic.rows.len(), 1);
    assert_eq!(pic.rows[0].organ, None);
    assert_eq!(pic.rows[0].slices, [5, 15, 10]);
    assert!(pic.rgb.chunks(3).all(|c| is_grey([c[0], c[1], c[2]])));
}

#[test]
fn single_slice_scan_and_foreign_labels_draw_without_fuss() {
    // One 5 mm slice: coronal and sagittal panels are a few pixels high, never empty or a panic.
    let g = centred([40, 30, 1], [1.0, 1.0, 5.0], IDENTITY);
    let (ct, lab) = phantom(g, |p| {
        if p[0].abs() < 5.0 && p[1].abs() < 5.0 {
            (50.0, 2)
        } else if p[0] > 10.0 {
            (50.0, 9)
        } else {
            (0.0, 0)
        }
    });
    let pic = draw(&ct, &lab);
    let organs: Vec<_> = pic.rows.iter().map(|r| r.organ).collect();
    assert_eq!(organs, vec![Some(2)], "label 9 is no organ");
    let heights: Vec<_> = pic.rows[0].panels.iter().map(|r| r.height).collect();
    // 40 mm fills 256 px (0.156 mm per pixel); 5 mm is 32 px.
    assert_eq!(heights, vec![192, 32, 32]);
    let ax = pic.rows[0].panels[0];
    assert!(!pixels(&pic, ax, |c| c == ORGAN_COLOURS[1]).is_empty());
}

#[test]
fn written_png_decodes_to_the_picture() {
    let dir = flare_testkit::TempDir::new("report-png");
    let (ct, lab) = thick_slice_sphere();
    let out = dir.join("nested/case.png");
    let opts = OverlayOptions {
        max_panel_px: 100,
        ..OverlayOptions::default()
    };
    let info = write_overlay_png(&ct, &lab, &out, &opts).expect("write");
    let pic = render(&ct, &lab, &out, &opts).expect("render");
    let file = std::fs::File::open(&out).expect("open");
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let frame = reader.next_frame(&mut buf).expect("png data");
    assert_eq!((frame.width, frame.height), (info.width_px, info.height_px));
    assert_eq!(frame.color_type, png::ColorType::Rgb);
    assert_eq!(&buf[..frame.buffer_size()], &pic.rgb[..]);
    assert_eq!(info.organs_shown, vec![1]);
    // Largest panel side is max_panel_px (120 mm over 100 px); one row: bar, three panels.
    let heights: Vec<_> = pic.rows[0].panels.iter().map(|r| r.height).collect();
    assert_eq!(heights, vec![93, 100, 100]);
    assert_eq!(info.height_px, 100 + 2 * 4);
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.join("nested"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("case.png")]);
}

#[test]
fn bad_inputs_are_errors_naming_the_picture() {
    let dir = flare_testkit::TempDir::new("report-errors");
    let (ct, lab) = thick_slice_sphere();
    // A folder that cannot be created: its parent is a file.
    let blocker = dir.join("not-a-folder");
    std::fs::write(&blocker, b"x").expect("write");
    let out = blocker.join("case.png");
    let e = write_overlay_png(&ct, &lab, &out, &OverlayOptions::default()).expect_err("unwritable");
    assert!(
        e.to_string().contains(&blocker.display().to_string()),
        "{e}"
    );

    let other = Volume::filled(centred([10, 10, 10], [1.0; 3], IDENTITY), 0u8);
    let e = write_overlay_png(&ct, &other, &dir.join("a.png"), &OverlayOptions::default())
        .expect_err("shape");
    assert!(matches!(e, crate::ReportError::GridMismatch { .. }), "{e}");
    assert!(e.to_string().contains("a.png"), "{e}");

    let shifted = lab
        .clone()
        .with_geometry(
            Geometry::new(lab.shape(), [0.7, 0.7, 5.0], [0.0; 3], IDENTITY).expect("geometry"),
        )
        .expect("same shape");
    let e = write_overlay_png(
        &ct,
        &shifted,
        &dir.join("b.png"),
        &OverlayOptions::default(),
    )
    .expect_err("affine");
    assert!(matches!(e, crate::ReportError::GridMismatch { .. }), "{e}");

    for opts in [
        OverlayOptions {
            window_hu: [240.0, -160.0],
            ..OverlayOptions::default()
        },
        OverlayOptions {
            window_hu: [f32::NAN, 0.0],
            ..OverlayOptions::default()
        },
        OverlayOptions {
            max_panel_px: 0,
            ..OverlayOptions::default()
        },
    ] {
        let e = write_overlay_png(&ct, &lab, &dir.join("c.png"), &opts).expect_err("options");
        assert!(matches!(e, crate::ReportError::BadOptions { .. }), "{e}");
    }
    assert!(
        !dir.join("a.png").exists() && !dir.join("b.png").exists() && !dir.join("c.png").exists()
    );
}

/// sRGB 0-255 to linear light.
fn linear(c: u8) -> f64 {
    let v = f64::from(c) / 255.0;
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

fn srgb(v: f64) -> f64 {
    let v = v.clamp(0.0, 1.0);
    255.0
        * if v <= 0.0031308 {
            12.92 * v
        } else {
            1.055 * v.powf(1.0 / 2.4) - 0.055
        }
}

#[test]
fn organ_colours_stay_apart_for_colour_blind_readers_and_off_grey() {
    // Dichromat simulation in linear RGB (Viénot, Brettel and Mollon 1999).
    let normal = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let protan = [
        [0.11238, 0.88762, 0.0],
        [0.11238, 0.88762, 0.0],
        [0.00401, -0.00401, 1.0],
    ];
    let deutan = [
        [0.29275, 0.70725, 0.0],
        [0.29275, 0.70725, 0.0],
        [-0.02234, 0.02234, 1.0],
    ];
    for (vision, m) in [
        ("normal", normal),
        ("protanopia", protan),
        ("deuteranopia", deutan),
    ] {
        let seen: Vec<[f64; 3]> = ORGAN_COLOURS
            .iter()
            .map(|c| {
                let l = c.map(linear);
                std::array::from_fn(|r| srgb((0..3).map(|k| m[r][k] * l[k]).sum()))
            })
            .collect();
        for a in 0..4 {
            for b in a + 1..4 {
                let d = (0..3)
                    .map(|k| (seen[a][k] - seen[b][k]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                // 60 of 441 (black to white): clearly different swatches, not shades of one.
                assert!(
                    d >= 60.0,
                    "{vision}: organs {} and {} only {d:.0} apart",
                    a + 1,
                    b + 1
                );
            }
        }
    }
    // Outlines must never pass for CT grey: at least a third of full scale between the strongest
    // and weakest channel.
    for c in ORGAN_COLOURS {
        let spread = c.iter().max().copied().unwrap_or(0) - c.iter().min().copied().unwrap_or(0);
        assert!(spread >= 85, "{c:?} is too close to grey");
    }
}

#[test]
fn real_case_liver_on_the_image_left_spleen_on_the_right() {
    let Some(shared) = flare_testkit::shared_dir("real_case_liver_on_the_image_left") else {
        return;
    };
    let dir = shared.join("data/btcv");
    let ct = flare_nifti::read_image(dir.join("btcv_0005_0000.nii.gz"))
        .expect("CT")
        .volume;
    let lab = flare_nifti::read_label_map(dir.join("btcv_0005.nii.gz"))
        .expect("labels")
        .volume;
    // Stored LPS: a picture that ignored orientation would put the liver on the right.
    assert_eq!(ct.geometry().orientation().to_string(), "LPS");
    let pic = draw(&ct, &lab);
    assert_eq!(pic.rows.len(), 4);
    // Axial through the liver, coronal through the spleen: both organs are in each.
    for (row, p, name) in [(0, 0, "axial"), (2, 1, "coronal")] {
        let rect = pic.rows[row].panels[p];
        let liver = centre_fraction(&pixels(&pic, rect, |c| c == ORGAN_COLOURS[0]), rect);
        let spleen = centre_fraction(&pixels(&pic, rect, |c| c == ORGAN_COLOURS[2]), rect);
        assert!(liver.0 < 0.5, "{name}: liver at x = {:.2}", liver.0);
        assert!(spleen.0 > 0.5, "{name}: spleen at x = {:.2}", spleen.0);
    }
    // Sagittal through a kidney: the kidney (posterior) lies right of the liver (anterior).
    let rect = pic.rows[1].panels[2];
    let kidney = centre_fraction(&pixels(&pic, rect, |c| c == ORGAN_COLOURS[1]), rect);
    let liver = centre_fraction(&pixels(&pic, rect, |c| c == ORGAN_COLOURS[0]), rect);
    assert!(
        kidney.0 > liver.0,
        "sagittal: kidney {kidney:?}, liver {liver:?}"
    );
    // Coronal: the liver lies above the kidneys.
    let rect = pic.rows[1].panels[1];
    let kidney = centre_fraction(&pixels(&pic, rect, |c| c == ORGAN_COLOURS[1]), rect);
    let liver = centre_fraction(&pixels(&pic, rect, |c| c == ORGAN_COLOURS[0]), rect);
    assert!(
        liver.1 < kidney.1,
        "coronal: kidney {kidney:?}, liver {liver:?}"
    );
}
