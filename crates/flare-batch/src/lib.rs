//! A cohort over a cluster: the contract that lets Slurm job arrays and Kubernetes Indexed
//! Jobs spread one `flare segment` batch over many processes, with no case done twice, none
//! lost, and one summary at the end. flare schedules nothing itself; the engines do.
//!
//! - [`Part`], [`part_of`]: which cases a process does. A case belongs to part
//!   `SHA-256(name) mod N` (first 8 bytes, big-endian), so adding cases never moves the others;
//!   the index comes from flags or from the engine's variable ([`Part::from_env`]).
//! - [`Records`], [`CaseRecord`]: each case leaves `OUTPUT/.flare-records/<case>.json`
//!   (status, error, seconds, peak RSS, volumes, part, job, host), written atomically.
//! - [`gather`]: every planned case as complete, failed or missing, the volumes CSV
//!   ([`volumes_csv`]) and the HTML index's entries.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod error;
mod gather;
mod part;
mod record;

#[cfg(test)]
mod tests;

pub use crate::{
    error::{BatchError, Result},
    gather::{CaseState, Gathered, GatheredCase, PlannedCase, VolumeRow, gather, volumes_csv},
    part::{Engine, Part, engine_job, part_of},
    record::{CaseRecord, OrganVolumes, RECORDS_DIR, RecordStatus, Records},
};
