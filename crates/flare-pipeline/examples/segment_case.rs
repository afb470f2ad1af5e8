//! Segments one CT with a two-stage model and prints the time of each step, the region, the
//! notes, and, given the case's label map, the Dice per organ with and without each
//! post-processing step (to decide the defaults by measurement):
//! `cargo run --release -p flare-pipeline --example segment_case -- IMAGE.nii.gz [LABELS.nii.gz]
//! [MODEL.safetensors]` (the bundled model by default). `IMAGE` may be `phantom:NXxNYxNZ`
//! for a synthetic phantom of that size at 0.8 x 0.8 x 2.5 mm (memory and time at full size
//! with no data; its labels are then the phantom's).

use std::path::Path;

use flare_pipeline::{Model, PostProcess, SegmentOptions, organ_volumes_ml, segment};
use flare_volume::LabelMap;

fn dice(gt: &LabelMap, pred: &LabelMap) -> [f64; 4] {
    [1u8, 2, 3, 4].map(|o| {
        let (mut a, mut b, mut both) = (0u64, 0u64, 0u64);
        for (&g, &p) in gt.data().iter().zip(pred.data()) {
            a += (g == o) as u64;
            b += (p == o) as u64;
            both += (g == o && p == o) as u64;
        }
        if a + b == 0 {
            1.0
        } else {
            2.0 * both as f64 / (a + b) as f64
        }
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(image) = args.first() else {
        return Err("usage: segment_case IMAGE [LABELS] [MODEL]".into());
    };
    let model = match args.get(2) {
        Some(m) => Model::load(Path::new(m))?,
        None => Model::bundled()?,
    };
    println!("model: {}", model.describe());
    let t = std::time::Instant::now();
    let (ct, gt) = if let Some(size) = image.strip_prefix("phantom:") {
        let n: Vec<usize> = size.split('x').map(str::parse).collect::<Result<_, _>>()?;
        let [nx, ny, nz] = <[usize; 3]>::try_from(n).map_err(|_| "phantom:NXxNYxNZ")?;
        let spec = flare_testkit::phantom::PhantomSpec::new([nx, ny, nz], [0.8, 0.8, 2.5], 7);
        let (ct, labels) = flare_testkit::phantom::phantom(&spec.lps())?;
        (ct, Some(labels))
    } else {
        let ct = flare_nifti::read_image(image)?.volume;
        let gt = match args.get(1) {
            Some(l) if l != "-" => Some(flare_nifti::read_label_map(l)?.volume),
            _ => None,
        };
        (ct, gt)
    };
    println!(
        "read {:?} in {:.3} s",
        ct.shape(),
        t.elapsed().as_secs_f64()
    );
    let ctx = flare_engine::Ctx::new();
    let variants = [
        (
            "none",
            PostProcess {
                largest_components: false,
                fill_holes: false,
            },
        ),
        (
            "largest",
            PostProcess {
                largest_components: true,
                fill_holes: false,
            },
        ),
        (
            "largest+fill",
            PostProcess {
                largest_components: true,
                fill_holes: true,
            },
        ),
    ];
    for (name, pp) in variants {
        let t = std::time::Instant::now();
        let seg = segment(
            &ctx,
            &model,
            &ct,
            &SegmentOptions { postprocess: pp },
            &mut |_| {},
        )?;
        let s = seg.timings;
        println!(
            "[{name}] total {:.3} s: preprocess {:.3}, stage 1 {:.3}, stage 2 {:.3}, export {:.3}, post {:.3}; roi {:?}",
            t.elapsed().as_secs_f64(),
            s.preprocess_s,
            s.stage1_s,
            s.stage2_s,
            s.export_s,
            s.postprocess_s,
            seg.roi
        );
        for n in &seg.notes {
            println!("  note: {n}");
        }
        println!(
            "  volumes mL {:.1?}",
            organ_volumes_ml(&seg.labels, model.labels())
        );
        if let Some(gt) = &gt {
            let d = dice(gt, &seg.labels);
            println!(
                "  DSC liver {:.4} kidney {:.4} spleen {:.4} pancreas {:.4}",
                d[0], d[1], d[2], d[3]
            );
        }
    }
    // Peak resident memory of this process (Linux), the whole run.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM"))
    {
        println!("peak RSS: {}", line.trim_start_matches("VmHWM:").trim());
    }
    Ok(())
}
