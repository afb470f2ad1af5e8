//! Measures what the plausibility checks measure, on real files, to choose their bounds:
//! organ volumes, positions and cuts of label maps, and the image statistics of CTs.
//!
//! ```sh
//! cargo run -p flare-pipeline --example plausibility_survey -- ../shared/data/*/*.nii.gz
//! ```
//! A file named `*_0000.nii.gz` is read as a CT, any other as a label map (FLARE labels 1-4).
//! Prints one line per file and the warnings `flare_pipeline::plausibility` gives it.

use flare_pipeline::plausibility::{Organ, check_image, check_organs, image_stats, organ_stats};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        return Err("usage: plausibility_survey FILE.nii.gz...".into());
    }
    for f in &files {
        let name = std::path::Path::new(f)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with("_0000.nii.gz") {
            let ct = flare_nifti::read_image(f)?.volume;
            let t = std::time::Instant::now();
            let s = image_stats(&ct);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            println!(
                "ct {name} ({ms:.0} ms): fov {:.0} x {:.0} x {:.0} mm, spread {:.0} HU, roughness {:.3}, body > {:.0} HU {:.0} mL, soft {:.3}, width {:.0} mm",
                s.extent_mm[0],
                s.extent_mm[1],
                s.extent_mm[2],
                s.spread_hu,
                s.roughness,
                s.body_threshold_hu,
                s.body_ml,
                s.soft_fraction,
                s.body_width_mm.unwrap_or(f64::NAN),
            );
            for w in check_image(&s) {
                println!("  warning: {w}");
            }
        } else {
            let labels = flare_nifti::read_label_map(f)?.volume;
            let t = std::time::Instant::now();
            let o = organ_stats(&labels);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let c = |organ: Organ| o[organ as usize].centroid_mm.unwrap_or([f64::NAN; 3]);
            let (liver, kidneys, spleen) = (c(Organ::Liver), c(Organ::Kidneys), c(Organ::Spleen));
            let z: Vec<String> = o
                .iter()
                .map(|s| {
                    format!(
                        "{} {:.0} mL{}",
                        s.organ,
                        s.volume_ml,
                        if s.cut { " (cut)" } else { "" }
                    )
                })
                .collect();
            println!(
                "labels {name} ({ms:.0} ms): {} | liver right of spleen {:.0} mm, kidneys behind liver {:.0} mm, kidneys below liver {:.0} mm",
                z.join(", "),
                liver[0] - spleen[0],
                liver[1] - kidneys[1],
                liver[2] - kidneys[2],
            );
            for w in check_organs(&o) {
                println!("  warning: {w}");
            }
        }
    }
    Ok(())
}
