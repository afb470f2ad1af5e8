//! `flare._flare`: the native half of the Python package `flare` (distribution `flare-ct`).
//!
//! The Python half (`python/flare/__init__.py`) is the public API: it accepts paths, nibabel
//! images and numpy arrays, and shapes the results. This module does the work with flare's
//! own crates, with the GIL released: reading a file (`flare_io`), turning an array into a
//! volume (its `convert` module), segmenting (`flare_pipeline::segment`) and scoring (`flare_metrics`).
//!
//! Errors become Python exceptions with the CLI's one-line messages: `OSError` (or
//! `FileNotFoundError`) for files, `ValueError` for arrays and arguments. Nothing here panics on
//! input; PyO3 would turn a panic into an exception, but none is expected.

mod convert;

use std::{path::PathBuf, time::Instant};

use flare_io::{CtImage, IoError, ReadOptions, Source};
use flare_labels::LabelSet;
use flare_metrics::{CaseOutcome, CaseScore, NUM_ORGANS, Tolerances};
use flare_pipeline::{
    Model, PipelineError, PostProcess, PrecisionChoice, SegmentOptions, Segmentation,
};
use flare_volume::{Affine, Volume};
use numpy::{PyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::{
    exceptions::{PyFileNotFoundError, PyOSError, PyValueError},
    prelude::*,
    types::PyDict,
};

use crate::convert::ArrayError;

/// The name flare gives the built-in model wherever a model file is asked for.
const BUILTIN: &str = "builtin";

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn pipeline_error(e: &PipelineError) -> PyErr {
    match e {
        PipelineError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        _ => PyOSError::new_err(e.to_string()),
    }
}

fn array_error(e: ArrayError) -> PyErr {
    value_error(e)
}

/// A thread pool of `threads` workers, or `None` for rayon's global pool (one per core).
fn pool(threads: Option<usize>) -> PyResult<Option<rayon::ThreadPool>> {
    match threads {
        None => Ok(None),
        Some(0) => Err(value_error("threads must be at least 1")),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("flare-{i}"))
            .build()
            .map(Some)
            .map_err(|e| PyOSError::new_err(format!("cannot start {n} threads: {e}"))),
    }
}

/// Runs `f` in `pool`, or on the caller's thread with rayon's global pool.
fn run_in<T: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> T + Send) -> T {
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// What a segment call hands back to Python, before conversion to Python objects.
struct Outcome {
    seg: Segmentation,
    affine: Affine,
    read_s: f64,
    total_s: f64,
    notes: Vec<String>,
    /// Plausibility warnings (`flare_pipeline::plausibility`), as the CLI prints them.
    warnings: Vec<String>,
}

/// The plausibility warnings of a CT segmented with `labels`, as text.
fn warnings(ct: &Volume<f32>, seg: &Segmentation, labels: &LabelSet) -> Vec<String> {
    flare_pipeline::plausibility::check_with(ct, &seg.labels, labels)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A loaded two-stage model (see `flare.Model`); safe to share between Python threads.
#[pyclass(frozen, module = "flare._flare")]
struct NativeModel {
    model: Model,
    pool: Option<rayon::ThreadPool>,
    origin: String,
    /// The engine context of every segmentation: its number format, resolved once.
    ctx: flare_engine::Ctx,
}

#[pymethods]
impl NativeModel {
    /// Loads `path` (a file from `flare bundle`, or "builtin"), with `threads` workers, its
    /// networks in `precision` ("fp32", "bf16" or "auto", as `flare segment --precision`).
    #[new]
    #[pyo3(signature = (path, threads=None, precision="fp32"))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        threads: Option<usize>,
        precision: &str,
    ) -> PyResult<Self> {
        let choice: PrecisionChoice = precision.parse().map_err(value_error)?;
        let pool = pool(threads)?;
        let model = py
            .detach(|| {
                if path.as_os_str() == BUILTIN {
                    Model::bundled()
                } else {
                    Model::load(&path)
                }
            })
            .map_err(|e| pipeline_error(&e))?;
        Ok(NativeModel {
            model,
            pool,
            origin: path.display().to_string(),
            ctx: choice.ctx(),
        })
    }

    /// The number format the networks run in: "fp32" or "bf16" ("bf16" and "auto" give
    /// "fp32" on a CPU without avx512_bf16).
    #[getter]
    fn precision(&self) -> &'static str {
        self.ctx.precision().name()
    }

    /// One line: the model's name, each stage's training steps and validation Dice.
    fn describe(&self) -> String {
        self.model.describe()
    }

    /// The file it came from, or "builtin".
    #[getter]
    fn origin(&self) -> String {
        self.origin.clone()
    }

    /// Worker threads of this model's own pool, or `None` when it uses the global pool.
    #[getter]
    fn threads(&self) -> Option<usize> {
        self.pool.as_ref().map(|p| p.current_num_threads())
    }

    /// Reads and segments a NIfTI file or DICOM series folder.
    #[pyo3(signature = (path, series=None, largest_components=true, fill_holes=true))]
    fn segment_path<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
        series: Option<String>,
        largest_components: bool,
        fill_holes: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let options = options(largest_components, fill_holes);
        let read = ReadOptions { series_uid: series };
        let out = py.detach(|| -> Result<Outcome, PyErrText> {
            let start = Instant::now();
            let image: CtImage = flare_io::read_ct(&path, &read)
                .map_err(|e| PyErrText::Io(io_error_kind(&e), e.to_string()))?;
            let read_s = start.elapsed().as_secs_f64();
            let affine = match &image.source {
                // The header's own affine, exactly as nibabel's `img.affine`.
                Source::Nifti { header, .. } => header
                    .best_affine()
                    .unwrap_or_else(|| image.volume.geometry().affine()),
                Source::Dicom { .. } => image.volume.geometry().affine(),
            };
            let mut notes = Vec::new();
            if let Source::Dicom {
                choice_note: Some(n),
                ..
            } = &image.source
            {
                notes.push(n.clone());
            }
            let seg = self.run(&image.volume, &options, &path.display().to_string())?;
            Ok(Outcome {
                warnings: warnings(&image.volume, &seg, self.model.labels()),
                seg,
                affine,
                read_s,
                total_s: start.elapsed().as_secs_f64(),
                notes,
            })
        });
        outcome_dict(py, self.model.labels(), out.map_err(PyErrText::into_err)?)
    }

    /// Segments a numpy array (indexed `[i, j, k]`) under a 4x4 nibabel affine; `scale` is a
    /// NIfTI `(slope, inter)` applied as flare's reader applies it.
    #[pyo3(signature = (array, affine, scale=None, name="array".to_string(), largest_components=true, fill_holes=true))]
    #[allow(clippy::too_many_arguments)]
    fn segment_array<'py>(
        &self,
        py: Python<'py>,
        array: &Bound<'py, PyAny>,
        affine: PyReadonlyArray2<'py, f64>,
        scale: Option<(f64, f64)>,
        name: String,
        largest_components: bool,
        fill_holes: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let affine = affine_rows(&affine, &name)?;
        let options = options(largest_components, fill_holes);
        let out = with_array(array, &name, |view| {
            py.detach(|| -> Result<Outcome, PyErrText> {
                let start = Instant::now();
                let volume = view
                    .to_volume(&affine, scale, &name)
                    .map_err(|e| PyErrText::Value(e.to_string()))?;
                let read_s = start.elapsed().as_secs_f64();
                let seg = self.run(&volume, &options, &name)?;
                let affine = Affine::from_rows([affine[0], affine[1], affine[2]]);
                Ok(Outcome {
                    warnings: warnings(&volume, &seg, self.model.labels()),
                    seg,
                    affine,
                    read_s,
                    total_s: start.elapsed().as_secs_f64(),
                    notes: Vec::new(),
                })
            })
        })?;
        outcome_dict(py, self.model.labels(), out.map_err(PyErrText::into_err)?)
    }
}

impl NativeModel {
    fn run(
        &self,
        volume: &Volume<f32>,
        options: &SegmentOptions,
        name: &str,
    ) -> Result<Segmentation, PyErrText> {
        run_in(self.pool.as_ref(), || {
            flare_pipeline::segment(&self.ctx, &self.model, volume, options, &mut |_| {})
        })
        .map_err(|e| PyErrText::Value(format!("{name}: segmenting: {e}")))
    }
}

fn options(largest_components: bool, fill_holes: bool) -> SegmentOptions {
    SegmentOptions {
        postprocess: PostProcess {
            largest_components,
            fill_holes,
        },
    }
}

/// An error made without the GIL, turned into an exception once it is held again.
enum PyErrText {
    Io(IoKind, String),
    Value(String),
}

#[derive(Clone, Copy)]
enum IoKind {
    NotFound,
    Other,
}

fn io_error_kind(e: &IoError) -> IoKind {
    match e {
        IoError::NotFound { .. } => IoKind::NotFound,
        _ => IoKind::Other,
    }
}

impl PyErrText {
    fn into_err(self) -> PyErr {
        match self {
            PyErrText::Io(IoKind::NotFound, m) => PyFileNotFoundError::new_err(m),
            PyErrText::Io(IoKind::Other, m) => PyOSError::new_err(m),
            PyErrText::Value(m) => PyValueError::new_err(m),
        }
    }
}

/// The 4x4 affine, checked to be finite.
fn affine_rows(affine: &PyReadonlyArray2<'_, f64>, name: &str) -> PyResult<[[f64; 4]; 4]> {
    let a = affine.as_array();
    if a.shape() != [4, 4] {
        return Err(value_error(format!(
            "{name}: the affine must be a 4x4 matrix, not shape {:?}",
            a.shape()
        )));
    }
    let mut rows = [[0.0; 4]; 4];
    for r in 0..4 {
        for c in 0..4 {
            rows[r][c] = a[[r, c]];
        }
    }
    if rows.iter().flatten().any(|v| !v.is_finite()) {
        return Err(value_error(format!(
            "{name}: invalid geometry (affine): affine has a non-finite entry"
        )));
    }
    Ok(rows)
}

/// A borrowed numpy array of one of the voxel types flare takes, for use without the GIL.
enum AnyView<'a> {
    U8(ndarray::ArrayViewD<'a, u8>),
    I8(ndarray::ArrayViewD<'a, i8>),
    I16(ndarray::ArrayViewD<'a, i16>),
    U16(ndarray::ArrayViewD<'a, u16>),
    I32(ndarray::ArrayViewD<'a, i32>),
    U32(ndarray::ArrayViewD<'a, u32>),
    I64(ndarray::ArrayViewD<'a, i64>),
    U64(ndarray::ArrayViewD<'a, u64>),
    F32(ndarray::ArrayViewD<'a, f32>),
    F64(ndarray::ArrayViewD<'a, f64>),
}

macro_rules! each_view {
    ($v:expr, $x:ident => $body:expr) => {
        match $v {
            AnyView::U8($x) => $body,
            AnyView::I8($x) => $body,
            AnyView::I16($x) => $body,
            AnyView::U16($x) => $body,
            AnyView::I32($x) => $body,
            AnyView::U32($x) => $body,
            AnyView::I64($x) => $body,
            AnyView::U64($x) => $body,
            AnyView::F32($x) => $body,
            AnyView::F64($x) => $body,
        }
    };
}

impl AnyView<'_> {
    fn to_volume(
        &self,
        affine: &[[f64; 4]; 4],
        scale: Option<(f64, f64)>,
        name: &str,
    ) -> Result<Volume<f32>, ArrayError> {
        each_view!(self, v => convert::ct_volume(v.view(), affine, scale, name))
    }

    fn classes(&self, name: &str) -> Result<([usize; 3], Vec<u8>), ArrayError> {
        each_view!(self, v => convert::classes(v.view(), name))
    }
}

/// The dtypes accepted, for messages.
const DTYPES: &str = "uint8, int8, int16, uint16, int32, uint32, int64, uint64, float32, float64";

/// Borrows `array` read-only as whichever supported dtype it has and calls `f` with the view.
fn with_array<'py, T>(
    array: &Bound<'py, PyAny>,
    name: &str,
    f: impl FnOnce(AnyView<'_>) -> T,
) -> PyResult<T> {
    macro_rules! try_dtype {
        ($t:ty, $variant:ident) => {
            if let Ok(a) = array.cast::<PyArrayDyn<$t>>() {
                let ro = a
                    .try_readonly()
                    .map_err(|e| value_error(format!("{name}: cannot read the array: {e}")))?;
                return Ok(f(AnyView::$variant(ro.as_array())));
            }
        };
    }
    try_dtype!(u8, U8);
    try_dtype!(i8, I8);
    try_dtype!(i16, I16);
    try_dtype!(u16, U16);
    try_dtype!(i32, I32);
    try_dtype!(u32, U32);
    try_dtype!(i64, I64);
    try_dtype!(u64, U64);
    try_dtype!(f32, F32);
    try_dtype!(f64, F64);
    let what = match array.cast::<numpy::PyUntypedArray>() {
        Ok(a) => format!("dtype {}", a.dtype()),
        Err(_) => format!(
            "type {}",
            array
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ),
    };
    Err(value_error(format!(
        "{name}: a numpy array of {what} is not supported; supported dtypes: {DTYPES}"
    )))
}

fn outcome_dict<'py>(
    py: Python<'py>,
    labels: &LabelSet,
    out: Outcome,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let volumes = flare_pipeline::organ_volumes_ml(&out.seg.labels, labels);
    let t = out.seg.timings;
    let timings = PyDict::new(py);
    for (k, v) in [
        ("read", out.read_s),
        ("preprocess", t.preprocess_s),
        ("stage1", t.stage1_s),
        ("stage2", t.stage2_s),
        ("export", t.export_s),
        ("stage3", t.refine_s.unwrap_or(0.0)),
        ("postprocess", t.postprocess_s),
        ("total", out.total_s),
    ] {
        timings.set_item(k, v)?;
    }
    let vol = PyDict::new(py);
    for (organ, v) in labels.organs().iter().zip(volumes) {
        vol.set_item(&organ.name, v)?;
    }
    let mut notes = out.notes;
    notes.extend(out.seg.notes.iter().cloned());
    let roi = out.seg.roi.map(|r| (r.start(), r.end()));
    let labels = convert::labels_array(out.seg.labels).map_err(array_error)?;
    d.set_item("labels", PyArray::from_owned_array(py, labels))?;
    d.set_item(
        "affine",
        PyArray::from_owned_array(
            py,
            ndarray::Array2::from_shape_fn((4, 4), |(r, c)| out.affine.m[r][c]),
        ),
    )?;
    d.set_item("volumes_ml", vol)?;
    d.set_item("timings", timings)?;
    d.set_item("notes", notes)?;
    d.set_item("warnings", out.warnings)?;
    d.set_item("roi", roi)?;
    Ok(d)
}

fn tolerances(mm: [f64; NUM_ORGANS]) -> PyResult<Tolerances> {
    Tolerances::per_organ(mm).map_err(value_error)
}

fn score_dict<'py>(
    py: Python<'py>,
    s: &CaseScore,
    tol: &Tolerances,
    warnings: Vec<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let dsc = PyDict::new(py);
    let nsd = PyDict::new(py);
    let row = PyDict::new(py);
    for (organ, o) in tol.labels().organs().iter().zip(&s.organs) {
        let label = usize::from(organ.value);
        dsc.set_item(&organ.name, o.dsc)?;
        nsd.set_item(&organ.name, o.nsd)?;
        row.set_item(format!("DSC_{label}"), o.dsc)?;
        row.set_item(tol.column_name(label), o.nsd)?;
    }
    d.set_item("dsc", dsc)?;
    d.set_item("nsd", nsd)?;
    d.set_item("row", row)?;
    d.set_item("mean_dsc", s.mean_dsc())?;
    d.set_item("mean_nsd", s.mean_nsd())?;
    d.set_item("pred_other_voxels", s.pred_other_voxels)?;
    d.set_item("gt_other_voxels", s.gt_other_voxels)?;
    d.set_item("warnings", warnings)?;
    Ok(d)
}

/// Scores the label map file `pred` against `gt` exactly as `flare evaluate` scores a case.
#[pyfunction]
#[pyo3(signature = (pred, gt, tolerances_mm, threads=None))]
fn evaluate_files<'py>(
    py: Python<'py>,
    pred: PathBuf,
    gt: PathBuf,
    tolerances_mm: [f64; NUM_ORGANS],
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let tol = tolerances(tolerances_mm)?;
    let pool = pool(threads)?;
    // `flare evaluate` scores a missing prediction as empty, as FLARE did for a folder; a
    // caller naming one file wants to hear that it is not there.
    for p in [&gt, &pred] {
        if !p.exists() {
            return Err(PyFileNotFoundError::new_err(format!(
                "{}: no such file",
                p.display()
            )));
        }
        if let Err(e) = flare_nifti::read_header(p) {
            return Err(PyOSError::new_err(e.to_string()));
        }
    }
    let name = flare_metrics::case_stem(
        &gt.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )
    .unwrap_or("case")
    .to_string();
    let r = py.detach(|| {
        run_in(pool.as_ref(), || {
            flare_metrics::evaluate_case(&name, &gt, &pred, &tol)
        })
    });
    match r.outcome {
        CaseOutcome::Scored(s) | CaseOutcome::MissingPrediction(s) => {
            score_dict(py, &s, &tol, r.warnings)
        }
        CaseOutcome::Failed(msg) => Err(value_error(msg)),
    }
}

/// Scores two label arrays (indexed `[i, j, k]`) of one shape with the ground truth's spacing.
#[pyfunction]
#[pyo3(signature = (pred, gt, spacing_mm, tolerances_mm, threads=None))]
fn evaluate_arrays<'py>(
    py: Python<'py>,
    pred: &Bound<'py, PyAny>,
    gt: &Bound<'py, PyAny>,
    spacing_mm: [f64; 3],
    tolerances_mm: [f64; NUM_ORGANS],
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let tol = tolerances(tolerances_mm)?;
    let pool = pool(threads)?;
    let (gs, g) = with_array(gt, "ground truth", |v| {
        py.detach(|| v.classes("ground truth"))
    })?
    .map_err(array_error)?;
    let (ps, p) = with_array(pred, "prediction", |v| {
        py.detach(|| v.classes("prediction"))
    })?
    .map_err(array_error)?;
    if gs != ps {
        return Err(value_error(format!(
            "prediction and ground truth are on different grids (shapes differ: prediction {ps:?}, ground truth {gs:?})"
        )));
    }
    let s = py
        .detach(|| {
            run_in(pool.as_ref(), || {
                flare_metrics::score_case(&g, &p, gs, spacing_mm, &tol)
            })
        })
        .map_err(value_error)?;
    let mut warnings = Vec::new();
    for (what, n) in [
        ("ground truth", s.gt_other_voxels),
        ("prediction", s.pred_other_voxels),
    ] {
        if n > 0 {
            warnings.push(format!(
                "{what} has {n} voxel(s) with labels outside 0..4; they count as background"
            ));
        }
    }
    score_dict(py, &s, &tol, warnings)
}

/// The organ names of FLARE21's label set (what `evaluate` scores), label 1 first.
#[pyfunction]
fn organ_names() -> Vec<String> {
    let labels = LabelSet::flare21();
    labels.organs().iter().map(|l| l.name.clone()).collect()
}

/// The native module.
#[pymodule]
fn _flare(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeModel>()?;
    m.add_function(wrap_pyfunction!(evaluate_files, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(organ_names, m)?)?;
    m.add("BUILTIN", BUILTIN)?;
    Ok(())
}
