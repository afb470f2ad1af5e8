//! `flare`: abdominal organ segmentation in CT (liver, kidneys, spleen, pancreas), fast on a CPU.
//!
//! A thin binary: it parses arguments, sets up the thread pool, runs one subcommand from
//! [`cmd`] and maps its outcome to an exit code. All real work lives in the library crates.

// The arguments' doc comments are clap's --help texts, whose `<case>` placeholders are for
// people, not HTML.
#![allow(rustdoc::invalid_html_tags)]

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Segment the liver, kidneys, spleen and pancreas in abdominal CT, and score segmentations
/// exactly as the FLARE21 challenge did.
#[derive(Parser)]
#[command(name = "flare", version, propagate_version = true)]
struct Cli {
    /// Worker threads for the heavy work (default: one per core).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Segment the liver, kidneys, spleen and pancreas: a CT file, DICOM folder or folder of cases.
    ///
    /// INPUT is a .nii/.nii.gz file, a DICOM series folder, or a folder of cases in FLARE naming
    /// (`<case>_0000.nii.gz`). OUTPUT is a file for one case, or a folder for many, where each
    /// case becomes `<case>.nii.gz` (the `_0000` dropped, as FLARE names predictions). The label
    /// map (uint8: 1 liver, 2 kidneys, 3 spleen, 4 pancreas) lies on the input's voxel grid with
    /// its affine, qform and sform; for a DICOM series, on the grid `flare convert` writes.
    Segment(cmd::segment::Args),
    /// Bring the parts of a batch (cluster array tasks) together: one volumes CSV, one HTML
    /// index, and every case that is missing or failed.
    Gather(cmd::gather::Args),
    /// Show a scan's grid, orientation, datatype and intensity range (NIfTI file or DICOM folder),
    /// or a model file's networks and training record.
    Info(cmd::info::Args),
    /// Convert a DICOM series (or any readable volume) to NIfTI.
    Convert(cmd::convert::Args),
    /// Score predicted label maps against ground truth exactly as FLARE21 did (DSC, NSD).
    Evaluate(cmd::evaluate::Args),
    /// Run a command and report its wall time, CPU time, peak memory and GPU memory.
    Measure(cmd::measure::Args),
    /// Train the two-stage segmentation model (stage 1 whole scan, stage 2 organ region).
    Train(Box<cmd::train::Args>),
    /// Combine a stage-1 and a stage-2 model from `flare train` into one two-stage model file.
    Bundle(cmd::bundle::Args),
    /// Average the weights of model files of one training run (checkpoint averaging).
    Average(cmd::average::Args),
    /// Print efficiency figures (time of each step, peak memory).
    #[command(subcommand)]
    Bench(cmd::bench::Args),
}

/// A reader that closes flare's stdout early (`flare info builtin | head -3`) ends flare
/// quietly, as it ends coreutils, instead of `println!` panicking on the broken pipe: Rust
/// programs ignore SIGPIPE unless told otherwise. Files flare writes are atomic, so nothing is
/// left half-written when it ends this way.
#[cfg(unix)]
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: called first thing in `main`, before any other thread exists; it only restores
    // the default disposition of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    #[cfg(unix)]
    end_quietly_on_a_closed_pipe();
    // Before any thread or tensor exists: freed activations are reused without page faults
    // (the engine's `memory` module has the measurements).
    flare_engine::retain_freed_memory();
    let cli = Cli::parse();
    if let Some(n) = cli.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
    {
        eprintln!("flare: error: cannot start {n} threads: {e}");
        return ExitCode::from(2);
    }
    let outcome: anyhow::Result<ExitCode> = match cli.command {
        Command::Segment(args) => cmd::segment::run(&args),
        Command::Bundle(args) => cmd::bundle::run(&args),
        Command::Average(args) => cmd::average::run(&args),
        Command::Bench(args) => cmd::bench::run(&args),
        Command::Gather(args) => cmd::gather::run(&args),
        Command::Info(args) => cmd::info::run(&args),
        Command::Convert(args) => cmd::convert::run(&args),
        Command::Evaluate(args) => cmd::evaluate::run(&args),
        Command::Measure(args) => cmd::measure::run(&args),
        Command::Train(args) => cmd::train::run(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            // One line: the context chain, outermost first ("reading X: gzip stream truncated").
            eprintln!("flare: error: {}", cmd::util::error_text(&e));
            ExitCode::from(2)
        }
    }
}
