//! Times one NIfTI read (or write) in a fresh process and prints seconds and peak RSS as JSON,
//! for `scripts/bench/nifti_read.py`, which runs it next to nibabel.
//!
//! ```text
//! cargo run --release -p flare-nifti --example read_bench -- FILE [MODE]
//! ```
//! MODE is `image` (default: `read_image`, float32 with scaling), `raw` (`read_raw`), `labels`
//! (`read_label_map` of a threshold of the image, written first), `stream` (the alternative
//! design: streaming zlib-rs decode straight into float32, kept here to compare with), or
//! `write` (writes the image as int16 and a label map like it, to a temporary folder).

use std::{io::Read, time::Instant};

use flare_nifti::{
    LabelMap, read_image, read_label_map, read_raw, write_label_map_like, write_volume,
};

/// Peak resident set size of this process in MB (`VmHWM`).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The streaming alternative: flate2 (zlib-rs) decodes 4 MB at a time, converted straight into
/// the float32 output, so the peak is the output alone. Handles little-endian int16 only.
fn stream_read(path: &str) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let hdr = flare_nifti::read_header(path)?;
    if hdr.data_type() != Some(flare_nifti::DataType::Int16) {
        return Err("stream mode handles int16 only".into());
    }
    let file = std::fs::File::open(path)?;
    let mut dec =
        flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 16, file));
    let mut skip = vec![0u8; hdr.data_offset() as usize];
    dec.read_exact(&mut skip)?;
    let n = hdr.n_voxels();
    let mut out = vec![0f32; n];
    let mut buf = vec![0u8; 4 << 20];
    let mut done = 0;
    while done < n {
        let want = ((n - done) * 2).min(buf.len());
        dec.read_exact(&mut buf[..want])?;
        for (d, s) in out[done..done + want / 2]
            .iter_mut()
            .zip(buf[..want].chunks_exact(2))
        {
            *d = i16::from_le_bytes([s[0], s[1]]) as f32;
        }
        done += want / 2;
    }
    Ok(out)
}

/// A label map shaped like organs (smooth ellipsoids), as a segmentation would be: it
/// compresses like a real one, unlike a threshold of the noisy image.
fn organ_labels(image: &flare_nifti::Volume<f32>) -> LabelMap {
    let [nx, ny, nz] = image.shape();
    let mut data = Vec::with_capacity(nx * ny * nz);
    let organs: [(u8, [f64; 3], [f64; 3]); 5] = [
        (1, [-0.35, -0.1, 0.5], [0.35, 0.35, 0.3]),
        (3, [0.45, -0.15, 0.6], [0.15, 0.2, 0.15]),
        (2, [-0.25, 0.3, 0.4], [0.09, 0.13, 0.15]),
        (2, [0.25, 0.3, 0.4], [0.09, 0.13, 0.15]),
        (4, [0.05, 0.05, 0.45], [0.25, 0.05, 0.05]),
    ];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let p = [
                    i as f64 / nx as f64 * 2.0 - 1.0,
                    j as f64 / ny as f64 * 2.0 - 1.0,
                    k as f64 / nz as f64,
                ];
                let inside = |c: &[f64; 3], r: &[f64; 3]| {
                    (0..3).map(|a| ((p[a] - c[a]) / r[a]).powi(2)).sum::<f64>() < 1.0
                };
                let label = organs
                    .iter()
                    .find(|(_, c, r)| inside(c, r))
                    .map_or(0, |o| o.0);
                data.push(label);
            }
        }
    }
    LabelMap::new(*image.geometry(), data).unwrap_or_else(|_| image.map(|_| 0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: read_bench FILE [image|raw|labels|stream|write]")?;
    let mode = args.next().unwrap_or_else(|| "image".to_string());
    let t = Instant::now();
    let (shape, sum) = match mode.as_str() {
        "image" => {
            let img = read_image(&path)?;
            let sum: f64 = img.volume.data().iter().map(|&v| v as f64).sum();
            (img.volume.shape(), sum)
        }
        "raw" => {
            let img = read_raw(&path)?;
            let (lo, hi) = img.intensity_range().unwrap_or((0.0, 0.0));
            (img.header.shape(), lo + hi)
        }
        "stream" => {
            let data = stream_read(&path)?;
            let hdr = flare_nifti::read_header(&path)?;
            (hdr.shape(), data.iter().map(|&v| v as f64).sum())
        }
        "labels" | "write" => {
            let img = read_image(&path)?;
            let dir = std::env::temp_dir().join(format!("flare-read-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let labels = organ_labels(&img.volume);
            let out = dir.join("labels.nii.gz");
            let t_labels = Instant::now();
            write_label_map_like(&out, &labels, &img.header)?;
            let label_s = t_labels.elapsed().as_secs_f64();
            let result = if mode == "labels" {
                let t2 = Instant::now();
                let back = read_label_map(&out)?;
                let s = t2.elapsed().as_secs_f64();
                let sum = back.volume.data().iter().map(|&v| v as f64).sum();
                eprintln!("label map write {label_s:.3} s, read {s:.3} s");
                (back.volume.shape(), sum)
            } else {
                let t2 = Instant::now();
                let ct = dir.join("ct.nii.gz");
                write_volume(&ct, &img.volume, None)?;
                let s = t2.elapsed().as_secs_f64();
                let size = std::fs::metadata(&ct)?.len() as f64 / 1e6;
                let lsize = std::fs::metadata(&out)?.len() as f64 / 1e3;
                eprintln!(
                    "label map write {label_s:.3} s ({lsize:.0} kB), int16 volume write {s:.3} s \
                     ({size:.1} MB)"
                );
                (img.volume.shape(), 0.0)
            };
            std::fs::remove_dir_all(&dir)?;
            result
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    let seconds = t.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"{mode}\",\"seconds\":{seconds:.4},\"peak_rss_mb\":{:.1},\"shape\":{shape:?},\"checksum\":{sum}}}",
        peak_rss_mb()
    );
    Ok(())
}
