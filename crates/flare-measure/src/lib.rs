//! A resource monitor in the spirit of FLARE's: run a command, report what it cost.
//!
//! [`measure`] runs a command and samples, every interval (FLARE: 0.1 s), the resident memory
//! and CPU use of its whole process tree (Linux `/proc`) and, where an NVIDIA driver is present,
//! the used memory of a GPU (NVML, loaded at run time). The [`Report`] gives wall time, CPU time,
//! peak resident memory (the larger of the sampled tree sum and the kernel's high-water marks),
//! the samples, and FLARE's GPU figures: the robust maximum and the area under the memory-time
//! curve ([`stats`]). It serialises to JSON and prints as a short summary.

#![deny(missing_docs)]
// Only `nvml` (calling the driver library) and `wait` (wait4) may use `unsafe`.
#![deny(unsafe_code)]

mod error;
mod monitor;
mod nvml;
mod own;
mod proc_tree;
mod report;
pub mod stats;
mod wait;

pub use crate::{
    error::MeasureError,
    monitor::{Options, measure},
    nvml::{Gpu, NoGpu},
    own::{own_peak_rss_bytes, own_rss_bytes, reset_own_peak_rss},
    proc_tree::{ProcReader, TreeSample},
    report::{GpuReport, Report, Sample},
};
