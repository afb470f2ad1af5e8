//! `flare measure`: run a command and report what it cost (time, CPU, memory, GPU memory).

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

use anyhow::Context;
use flare_measure::{MeasureError, Options, measure};

/// Arguments of `flare measure`; its behaviour is described in [`DETAILS`] (the long help).
#[derive(clap::Args)]
#[command(after_long_help = DETAILS)]
pub struct Args {
    /// GPU to sample (index as nvidia-smi lists them).
    #[arg(long, value_name = "INDEX", default_value_t = 0)]
    pub gpu: u32,
    /// Seconds between samples (FLARE: 0.1).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.1)]
    pub interval: f64,
    /// Write the JSON report here instead of stdout.
    #[arg(long, value_name = "FILE.json")]
    pub out: Option<PathBuf>,
    /// The command to run and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

/// The long help (`flare measure --help`), after the options.
const DETAILS: &str = "\
Reports wall time, CPU time (user + system of the whole process tree), peak resident memory of
the process tree (the larger of the /proc samples summed over all descendants and the kernel's
high-water marks), RAM and CPU samples, and, where an NVIDIA GPU and driver are present
(libnvidia-ml.so.1, loaded at run time), the GPU's used memory at every sample with FLARE's
robust maximum (largest value seen in more than 2% of the samples) and the area under the
memory-time curve (MB·s, total and above 2048 MB). Without a GPU it says so.

A short summary goes to stderr; the full report is JSON, written to --out or else printed on
stdout after the command ends. The exit code is the command's (128 + signal if it was killed,
127 if it could not be started).

Example: flare measure --out run.json -- flare evaluate --pred out/ --gt labels/";

/// Runs the command; exits with its exit code.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let options = Options::with_interval_s(args.interval, args.gpu)?;
    let report = match measure(&args.command, &options) {
        Ok(r) => r,
        Err(e @ MeasureError::Spawn { .. }) => {
            // As a shell does for a command it cannot run.
            eprintln!("flare: error: {e}");
            return Ok(ExitCode::from(127));
        }
        Err(e) => return Err(e).context("measuring the command"),
    };
    eprintln!("{report}");
    let json = report.to_json();
    match &args.out {
        Some(path) => crate::cmd::util::atomic_write(path, (json + "\n").as_bytes())
            .with_context(|| format!("writing the report {}", path.display()))?,
        None => println!("{json}"),
    }
    Ok(ExitCode::from(report.passthrough_exit_code()))
}
