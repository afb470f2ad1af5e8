//! Writes the seed corpora `fuzz/seeds/<target>/` (run from `fuzz/`: `cargo run --release
//! --bin make_seeds`; `cargo afl build` builds it too). Deterministic: rerunning rewrites the
//! same bytes.
//!
//! - NIfTI: tiny phantom CTs (`flare-testkit`) and label maps written by flare-nifti's own
//!   writers (int16, float32, uint8; RAS and LPS; .nii and .nii.gz), plus a few of flare-nifti's
//!   test fixtures for what flare's writers never make (big endian, NIfTI-2, an extension, a
//!   qform-only header, multi-member gzip; made by `scripts/fixtures/nifti_fixtures.py`).
//! - DICOM: files of flare-dicom's test fixtures (made by `scripts/fixtures/dicom_fixtures.py`):
//!   explicit and implicit VR little endian, RLE Lossless, JPEG 2000 Lossless, JPEG-LS (which
//!   flare refuses); the repository has no CT writer of its own.
//! - Model files: tiny random two-stage models (with and without a refinement stage) written
//!   by flare-pipeline, and a single-stage file written by flare-model.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use flare_model::{ModelCard, UNet, UNetConfig, card::TargetGrid};
use flare_nifti::DataType;
use flare_pipeline::{Model, PipelinePlan, RefinePlan};
use flare_testkit::phantom::{PhantomSpec, phantom};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = fuzz.parent().ok_or("no repository root")?;
    let seeds = fuzz.join("seeds");
    let tmp = std::env::temp_dir().join(format!("flare-make-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = write_all(root, &seeds, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn write_all(root: &Path, seeds: &Path, tmp: &Path) -> Res<()> {
    let dir = |t: &str| -> Res<PathBuf> {
        let d = seeds.join(t);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    let (nii, gz) = (dir("nifti")?, dir("nifti_gz")?);
    // Phantom volumes written by flare's own writers.
    let ras = PhantomSpec::new([10, 8, 6], [4.0, 4.5, 5.0], 1);
    let lps = PhantomSpec::new([7, 9, 5], [3.0, 3.0, 6.0], 2).lps();
    for (name, spec) in [("ras", ras), ("lps", lps)] {
        let (ct, labels) = phantom(&spec)?;
        for (kind, dt) in [("int16", DataType::Int16), ("float32", DataType::Float32)] {
            let p = tmp.join(format!("{name}_{kind}.nii"));
            flare_nifti::write_volume(&p, &ct, Some(dt))?;
            copy(&p, &nii.join(format!("{name}_{kind}.nii")))?;
            let pz = tmp.join(format!("{name}_{kind}.nii.gz"));
            flare_nifti::write_volume(&pz, &ct, Some(dt))?;
            // Mode byte 0: the .nii.gz as it is; 1: the plain file, compressed by the harness.
            prefixed(0, &pz, &gz.join(format!("raw_{name}_{kind}.nii.gz")))?;
            prefixed(1, &p, &gz.join(format!("plain_{name}_{kind}.nii")))?;
        }
        let p = tmp.join(format!("{name}_labels.nii"));
        flare_nifti::write_label_map(&p, &labels)?;
        copy(&p, &nii.join(format!("{name}_labels.nii")))?;
    }
    // flare-nifti's fixtures for headers flare does not write.
    let fx = root.join("crates/flare-nifti/tests/fixtures");
    for f in ["bigendian_int16.nii", "qform_only.nii"] {
        copy(&fx.join(f), &nii.join(f))?;
    }
    for f in [
        "nifti2.nii.gz",
        "extension_4d.nii.gz",
        "oblique_float64.nii.gz",
    ] {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(fx.join(f))?)
            .read_to_end(&mut plain)?;
        let name = f.trim_end_matches(".gz");
        std::fs::write(nii.join(name), &plain)?;
    }
    for f in ["multimember.nii.gz", "nifti2.nii.gz"] {
        prefixed(0, &fx.join(f), &gz.join(format!("raw_{f}")))?;
    }

    // DICOM: single files of several transfer syntaxes, and 2-3 slices of a series.
    let dx = root.join("crates/flare-dicom/tests/fixtures");
    let (one, folder) = (dir("dicom_file")?, dir("dicom_folder")?);
    for (sub, file, name) in [
        ("shuffled", "IM0003", "explicit_le_int16.dcm"),
        ("oblique", "slice_00.dcm", "implicit_le_uint16.dcm"),
        ("rle", "IM0003", "rle_lossless.dcm"),
        ("j2k", "IM0003", "j2k_lossless.dcm"),
        ("bad_jpegls", "s00.dcm", "jpegls_refused.dcm"),
    ] {
        copy(&dx.join(sub).join(file), &one.join(name))?;
    }
    for (sub, files, name) in [
        (
            "shuffled",
            &["IM0003", "IM0010", "IM0017"][..],
            "explicit_le_3.bin",
        ),
        (
            "oblique",
            &["slice_00.dcm", "slice_01.dcm", "slice_02.dcm"][..],
            "implicit_le_3.bin",
        ),
        ("rle", &["IM0003", "IM0010"][..], "rle_2.bin"),
        ("j2k", &["IM0003", "IM0010"][..], "j2k_2.bin"),
    ] {
        let mut joined = Vec::new();
        for (i, f) in files.iter().enumerate() {
            if i > 0 {
                joined.extend_from_slice(flare_fuzz::FILE_SEPARATOR);
            }
            joined.extend(std::fs::read(dx.join(sub).join(f))?);
        }
        std::fs::write(folder.join(name), joined)?;
    }

    // Model files.
    let models = dir("model_file")?;
    let plan = PipelinePlan {
        roi_margin: 0.1,
        name: "fuzz-seed".into(),
        notes: "random weights, a seed for fuzzing".into(),
        refine: None,
    };
    let one_level = |seed| stage(seed, &[2], [4, 4, 4]);
    let two = Model::from_parts(one_level(1)?, one_level(2)?, plan.clone())?;
    std::fs::write(models.join("two_stage_1level.safetensors"), two.to_bytes()?)?;
    let deeper = Model::from_parts(stage(3, &[2, 4], [4, 4, 4])?, one_level(4)?, plan.clone())?;
    std::fs::write(
        models.join("two_stage_2levels.safetensors"),
        deeper.to_bytes()?,
    )?;
    let (net3, card3) = one_level(5)?;
    let refine = RefinePlan {
        label: 4,
        margin: 0.25,
    };
    let three = two.with_refinement(net3, card3, refine)?;
    std::fs::write(models.join("three_stage.safetensors"), three.to_bytes()?)?;
    let (net, card) = one_level(6)?;
    std::fs::write(
        models.join("single_stage.safetensors"),
        flare_model::file::to_bytes(&net, &card)?,
    )?;
    Ok(())
}

/// A random U-Net of `widths` (5 FLARE classes) on a fixed `grid_dhw`.
fn stage(seed: u64, widths: &[usize], grid_dhw: [usize; 3]) -> Res<(UNet, ModelCard)> {
    let cfg = UNetConfig::standard(1, 5, widths);
    let net = UNet::init(&cfg, seed)?;
    let mut card = ModelCard::untrained(cfg);
    card.preprocessing.target_grid = TargetGrid::FixedSize { size: grid_dhw };
    Ok((net, card))
}

fn copy(from: &Path, to: &Path) -> Res<()> {
    std::fs::copy(from, to).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
    Ok(())
}

/// Writes `mode` followed by the bytes of `from` (the `nifti_gz` input format).
fn prefixed(mode: u8, from: &Path, to: &Path) -> Res<()> {
    let mut bytes = vec![mode];
    bytes.extend(std::fs::read(from)?);
    std::fs::write(to, bytes)?;
    Ok(())
}
