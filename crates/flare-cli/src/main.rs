//! `flare`: abdominal organ segmentation in CT (liver, kidneys, spleen, pancreas), fast on a CPU.
//!
//! A thin binary: it parses arguments, sets up the thread pool, runs one subcommand from
//! [`cmd`] and maps its outcome to an exit code. All real work lives in the library crates.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Segment the liver, kidneys, spleen and pancreas in abdominal CT, and score segmentations
/// exactly as the FLARE21 challenge did.
#[derive(Parser)]
#[command(name = "flare", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Worker threads for the heavy work (default: one per core).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global() {
            eprintln!("flare: error: cannot start {n} threads: {e}");
            return ExitCode::from(2);
        }
    }
    let outcome: anyhow::Result<ExitCode> = match cli.command {};
    match outcome {
        Ok(code) => code,
        Err(e) => {
            // One line: the context chain, outermost first ("reading X: gzip stream truncated").
            eprintln!("flare: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
