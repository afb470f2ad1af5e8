//! Combines two single-stage model files (as `flare train` writes them) into one two-stage
//! model file: `cargo run --release -p flare-pipeline --example bundle -- STAGE1 STAGE2 OUT
//! [MARGIN] [NAME] [NOTES]`. `flare bundle` does the same from the command line.

use std::path::Path;

use flare_pipeline::{Model, PipelinePlan};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(3..=6).contains(&args.len()) {
        return Err("usage: bundle STAGE1 STAGE2 OUT [MARGIN] [NAME] [NOTES]".into());
    }
    let roi_margin = match args.get(3) {
        Some(m) => m.parse()?,
        None => 0.1,
    };
    let plan = PipelinePlan {
        roi_margin,
        name: args.get(4).cloned().unwrap_or_else(|| "flare".into()),
        notes: args.get(5).cloned().unwrap_or_default(),
        refine: None,
        mirror_axes: Vec::new(),
        stage2_members: 1,
        stage2_class_offsets: Vec::new(),
    };
    let model = Model::from_stage_files(Path::new(&args[0]), Path::new(&args[1]), plan)?;
    model.save(Path::new(&args[2]))?;
    // Read back what was written: the file must load as it will in `flare segment`.
    let back = Model::load(Path::new(&args[2]))?;
    println!("{}", back.describe());
    Ok(())
}
