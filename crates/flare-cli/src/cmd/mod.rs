//! One module per subcommand: its arguments (`Args`) and its `run` function.

pub mod average;
pub mod batch;
pub mod bench;
pub mod bundle;
pub mod convert;
pub mod dicom_out;
pub mod evaluate;
pub mod gather;
pub mod info;
pub mod measure;
pub mod segment;
pub mod train;
pub mod util;
