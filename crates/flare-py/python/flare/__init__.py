"""flare: the liver, kidneys, spleen and pancreas in abdominal CT, in about a second on a CPU.

numpy in, numpy out, no PyTorch: the engine is flare's own Rust code, the model (2.8 MB) is
built in. A model is loaded once and segments any number of scans, from any number of threads
(the work runs without the GIL)::

    import flare, nibabel as nib
    model = flare.load_model()                     # the built-in model
    r = model.segment("scan.nii.gz")               # a NIfTI file or a DICOM series folder
    r = model.segment(nib.load("scan.nii.gz"))     # a nibabel image
    r = model.segment(array, affine)               # array [i, j, k] + nibabel's 4x4 affine
    r.labels, r.affine, r.volumes_ml, r.timings
    scores = flare.evaluate(r.to_nifti(), "truth.nii.gz")   # FLARE21 DSC and NSD

Labels: 0 background, 1 liver, 2 kidney, 3 spleen, 4 pancreas (``flare.LABELS``).

Geometry follows nibabel: arrays are indexed ``[i, j, k]`` and the affine maps ``(i, j, k, 1)`` to
RAS+ millimetres. A label map comes back on the input's own grid, indexed like the input, with
the input's affine, whatever the orientation (RAS, LPS, oblique).

Errors are exceptions carrying the one-line messages of the ``flare`` command: ``OSError`` (or
``FileNotFoundError``) for files, ``ValueError`` for arrays and arguments (2D or 4D data, NaN,
a singular affine, an empty array, an unsupported dtype).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _flare

__all__ = [
    "LABELS",
    "ORGANS",
    "Model",
    "Scores",
    "Segmentation",
    "evaluate",
    "load_model",
]

#: The organs, label 1 first.
ORGANS: Tuple[str, ...] = tuple(_flare.organ_names())
#: Label value of each organ in a label map.
LABELS: Dict[str, int] = {name: i + 1 for i, name in enumerate(ORGANS)}

PathLike = Union[str, "os.PathLike[str]"]

try:  # The distribution's version, when installed (not when run from a source tree).
    from importlib.metadata import version as _version

    __version__ = _version("flare-ct")
except Exception:  # pragma: no cover - only outside an installed package
    __version__ = "0+unknown"


class Segmentation:
    """The result of :meth:`Model.segment`.

    Attributes:
        labels: ``uint8`` label map on the input's grid, indexed ``[i, j, k]`` like the input
            (C-ordered in memory when the input array was, else Fortran-ordered as nibabel
            gives file data): 0 background, 1 liver, 2 kidney, 3 spleen, 4 pancreas.
        affine: the input's 4x4 voxel-to-world affine (RAS+ mm): for a NIfTI file the one
            nibabel reports as ``img.affine``; for an array, the affine passed in.
        volumes_ml: volume of each organ in millilitres, by name (``"liver"``, ...).
        timings: seconds per step: ``read`` (reading the file, or taking in the array),
            ``preprocess``, ``stage1``, ``stage2``, ``export``, ``stage3`` (the refinement
            stage; 0 for a two-stage model), ``postprocess``, and ``total``
            for the whole native call.
        notes: things worth knowing (e.g. "stage 1 found no organ", stray pieces removed).
        warnings: plausibility warnings, one sentence each, empty for a plausible case: the
            input does not look like a CT of an adult abdomen (uniform, no body, noise, not
            Hounsfield units, head-sized, field of view too small), or an organ is missing,
            smaller or larger than an adult's, or in an impossible place. The labels are
            never changed by them; ``flare segment`` prints the same lines.
        roi: ``((i0, j0, k0), (i1, j1, k1))``, the voxel box stage 2 segmented (end
            exclusive), or ``None`` when stage 1 found no organ.
    """

    __slots__ = ("labels", "affine", "volumes_ml", "timings", "notes", "warnings", "roi", "_like")

    def __init__(self, raw: Dict[str, Any], like: Any = None, c_order: bool = False) -> None:
        labels = raw["labels"]
        self.labels: np.ndarray = np.ascontiguousarray(labels) if c_order else labels
        self.affine: np.ndarray = raw["affine"]
        self.volumes_ml: Dict[str, float] = dict(raw["volumes_ml"])
        self.timings: Dict[str, float] = dict(raw["timings"])
        self.notes: List[str] = list(raw["notes"])
        self.warnings: List[str] = list(raw["warnings"])
        self.roi: Optional[Tuple[Tuple[int, int, int], Tuple[int, int, int]]] = raw["roi"]
        self._like = like

    def to_nifti(self) -> Any:
        """The label map as a ``nibabel.Nifti1Image`` (uint8) on the input's grid.

        For a NIfTI input (a path or a nibabel image) the input's header is kept, qform and
        sform with their codes, so viewers place the labels exactly on the scan; otherwise the
        affine is set as both. Needs nibabel.
        """
        import nibabel as nib

        header = None
        like = self._like
        if isinstance(like, (str, os.PathLike)) and os.path.isfile(like):
            like = nib.load(os.fspath(like))
        if isinstance(like, nib.Nifti1Image):  # also Nifti2Image, a subclass
            header = like.header.copy()
            header.set_slope_inter(1.0, 0.0)
            img = type(like)(self.labels, self.affine, header=header)
        else:
            img = nib.Nifti1Image(self.labels, self.affine)
            img.set_qform(self.affine, code=1)
            img.set_sform(self.affine, code=1)
        img.set_data_dtype(np.uint8)
        return img

    def __repr__(self) -> str:
        vols = ", ".join(f"{k} {v:.0f} mL" for k, v in self.volumes_ml.items())
        return (
            f"<flare.Segmentation shape {tuple(self.labels.shape)}: {vols}; "
            f"{self.timings.get('total', float('nan')):.2f} s>"
        )


class Model:
    """A two-stage flare model, loaded once (see :func:`load_model`).

    Safe to share between threads: :meth:`segment` releases the GIL, and calls from several
    threads run at the same time on the model's thread pool.
    """

    __slots__ = ("_native",)

    def __init__(self, native: "_flare.NativeModel") -> None:
        self._native = native

    @property
    def description(self) -> str:
        """One line: the model's name, each stage's training steps and validation Dice."""
        return self._native.describe()

    @property
    def path(self) -> str:
        """The model file, or ``"builtin"``."""
        return self._native.origin

    @property
    def threads(self) -> Optional[int]:
        """Worker threads of the model's own pool; ``None``: one per core, shared."""
        return self._native.threads

    @property
    def precision(self) -> str:
        """The number format the networks run in: ``"fp32"`` or ``"bf16"``."""
        return self._native.precision

    def segment(
        self,
        scan: Any,
        affine: Any = None,
        *,
        series: Optional[str] = None,
        keep_all_components: bool = False,
        fill_holes: bool = True,
    ) -> Segmentation:
        """Segments the liver, kidneys, spleen and pancreas in a CT in Hounsfield units.

        Args:
            scan: a path to a ``.nii``/``.nii.gz`` file or a DICOM series folder; a nibabel
                image; a numpy array indexed ``[i, j, k]`` (with ``affine``); or a tuple
                ``(array, affine)``. Arrays may be int8/16/32/64, uint8/16/32/64, float32 or
                float64, in C or Fortran order or strided; they are read, never copied by the
                caller nor modified (flare copies them once into its own layout).
            affine: the 4x4 voxel-to-world affine in nibabel's convention (RAS+ mm), when
                ``scan`` is an array.
            series: for a DICOM folder holding several series, the SeriesInstanceUID to read
                (default: the series with the most slices).
            keep_all_components: keep every connected piece of each organ (by default the
                liver and spleen keep their largest piece, the kidneys their two largest).
            fill_holes: fill holes enclosed by an organ.

        Returns:
            A :class:`Segmentation` on the input's grid.

        Raises:
            OSError: the file or folder cannot be read (``FileNotFoundError`` if missing).
            ValueError: the array or affine cannot be a CT volume.
        """
        pp = dict(largest_components=not keep_all_components, fill_holes=fill_holes)
        if isinstance(scan, (str, os.PathLike)):
            if affine is not None:
                raise ValueError("affine is for arrays; a file carries its own")
            raw = self._native.segment_path(os.fspath(scan), series, **pp)
            return Segmentation(raw, like=os.fspath(scan))
        if series is not None:
            raise ValueError("series is for DICOM folders")
        if affine is None and isinstance(scan, tuple) and len(scan) == 2:
            scan, affine = scan
        if _is_nibabel_image(scan):
            if affine is not None:
                raise ValueError("affine is for arrays; a nibabel image carries its own")
            data, affine, scale, name = _from_nibabel(scan)
            raw = self._native.segment_array(data, _affine(affine, name), scale, name, **pp)
            return Segmentation(raw, like=scan)
        if affine is None:
            raise ValueError(
                "an array needs its 4x4 voxel-to-world affine: model.segment(array, affine)"
            )
        data = _array(scan, "array")
        raw = self._native.segment_array(data, _affine(affine, "array"), None, "array", **pp)
        c_order = data.flags.c_contiguous and not data.flags.f_contiguous
        return Segmentation(raw, c_order=c_order)

    def __repr__(self) -> str:
        return f"<flare.Model {self.description}>"


def load_model(
    path: Optional[PathLike] = None,
    *,
    threads: Optional[int] = None,
    precision: str = "fp32",
) -> Model:
    """Loads a two-stage model: the built-in one (``path`` None or ``"builtin"``) or a file
    made by ``flare train`` + ``flare bundle``.

    Args:
        path: the model file.
        threads: worker threads for this model's segmentations (a pool of its own); default:
            rayon's global pool, one thread per core.
        precision: ``"fp32"``; ``"bf16"`` (bf16 multiplies with fp32 sums, about 1.4x faster
            where the CPU has avx512_bf16; fp32 elsewhere, see :attr:`Model.precision`); or
            ``"auto"`` (bf16 where the CPU has it), as ``flare segment --precision``.

    Raises:
        OSError: the file cannot be read or is not a flare two-stage model.
        ValueError: ``threads`` is below 1, or ``precision`` is not one of the three.
    """
    p = _flare.BUILTIN if path is None else os.fspath(path)
    return Model(_flare.NativeModel(p, threads, precision))


class Scores:
    """FLARE21 scores of one case (see :func:`evaluate`).

    Attributes:
        dsc: Dice similarity coefficient per organ (``"liver"``, ``"kidney"``, ...).
        nsd: normalised surface Dice per organ at its tolerance.
        mean_dsc: mean DSC over the four organs (the case's DSC in FLARE's ranking).
        mean_nsd: mean NSD over the four organs.
        row: the official CSV columns (``DSC_1``, ``NSD-1mm_1``, ... ``NSD-1mm_4``).
        warnings: e.g. labels outside 0..4, which count as background.
    """

    __slots__ = ("dsc", "nsd", "mean_dsc", "mean_nsd", "row", "warnings")

    def __init__(self, raw: Dict[str, Any]) -> None:
        self.dsc: Dict[str, float] = dict(raw["dsc"])
        self.nsd: Dict[str, float] = dict(raw["nsd"])
        self.mean_dsc: float = raw["mean_dsc"]
        self.mean_nsd: float = raw["mean_nsd"]
        self.row: Dict[str, float] = dict(raw["row"])
        self.warnings: List[str] = list(raw["warnings"])

    def __repr__(self) -> str:
        per = " ".join(f"{k} {self.dsc[k]:.4f}/{self.nsd[k]:.4f}" for k in self.dsc)
        return f"<flare.Scores DSC {self.mean_dsc:.4f} NSD {self.mean_nsd:.4f} ({per})>"


def evaluate(
    pred: Any,
    gt: Any,
    *,
    tolerance: Union[float, Mapping[Union[int, str], float]] = 1.0,
    spacing: Optional[Tuple[float, float, float]] = None,
    threads: Optional[int] = None,
) -> Scores:
    """FLARE21 DSC and NSD of a predicted label map against the ground truth, the numbers
    ``flare evaluate`` gives (and the official evaluation code).

    Args:
        pred, gt: each a NIfTI path, a nibabel image, an ``(array, affine)`` tuple, or a bare
            array (then give ``spacing``). Labels 1..4 are the organs; other values count as
            background (with a warning).
        tolerance: NSD tolerance in mm for every organ (FLARE21: 1), or per organ as a mapping
            from label (1..4) or organ name to mm; unlisted organs keep 1 mm.
        spacing: voxel spacing in mm along ``i, j, k``; by default the ground truth's
            (``pixdim`` of a NIfTI header, as the official code; for an ``(array, affine)``
            the lengths of the affine's columns).
        threads: worker threads (default: one per core).

    Raises:
        OSError: a file cannot be read (``FileNotFoundError`` if missing).
        ValueError: the two are on different grids, or an array is not a 3D label map.
    """
    tol = _tolerances(tolerance)
    if isinstance(pred, (str, os.PathLike)) and isinstance(gt, (str, os.PathLike)) and spacing is None:
        return Scores(_flare.evaluate_files(os.fspath(pred), os.fspath(gt), tol, threads))
    p_arr, p_aff, _ = _labels_of(pred, "prediction")
    g_arr, g_aff, g_zooms = _labels_of(gt, "ground truth")
    if p_aff is not None and g_aff is not None:
        diff = float(np.max(np.abs(np.asarray(p_aff, float) - np.asarray(g_aff, float))))
        if not diff <= _GRID_TOLERANCE_MM:
            raise ValueError(
                "prediction and ground truth are on different grids "
                f"(affines differ by up to {diff:.3e} mm); resample the prediction onto the "
                "ground truth's grid"
            )
    if spacing is None:
        if g_zooms is not None:
            spacing = g_zooms
        elif g_aff is not None:
            spacing = tuple(float(v) for v in np.linalg.norm(np.asarray(g_aff, float)[:3, :3], axis=0))
        else:
            raise ValueError("the ground truth is a bare array: give spacing=(si, sj, sk) in mm")
    sp = tuple(float(abs(v)) for v in spacing)
    if len(sp) != 3:
        raise ValueError(f"spacing must be 3 numbers (mm along i, j, k), not {spacing!r}")
    return Scores(_flare.evaluate_arrays(p_arr, g_arr, sp, tol, threads))


# As flare_metrics::GRID_TOLERANCE_MM: affines through float32 headers differ by ~1e-5 mm.
_GRID_TOLERANCE_MM = 1e-3


def _tolerances(tolerance: Union[float, Mapping[Union[int, str], float]]) -> List[float]:
    if isinstance(tolerance, Mapping):
        out = [1.0] * len(ORGANS)
        for key, mm in tolerance.items():
            label = LABELS.get(key) if isinstance(key, str) else key
            if not isinstance(label, int) or not 1 <= label <= len(ORGANS):
                raise ValueError(f"tolerance: {key!r} is not an organ label 1..4 or name {ORGANS}")
            out[label - 1] = float(mm)
        return out
    return [float(tolerance)] * len(ORGANS)


def _is_nibabel_image(x: Any) -> bool:
    return hasattr(x, "dataobj") and hasattr(x, "affine") and hasattr(x, "header")


def _from_nibabel(img: Any) -> Tuple[np.ndarray, Any, Optional[Tuple[float, float]], str]:
    """The stored voxels, affine, scaling and a name of a nibabel image.

    An image read from a file keeps its voxels as stored with the header's scaling, which flare
    applies as its own reader does, so the image and its file give the same volume.
    """
    name = img.get_filename() if hasattr(img, "get_filename") else None
    name = name or "nibabel image"
    if img.affine is None:
        raise ValueError(f"{name}: the image has no affine")
    proxy = img.dataobj
    scale = None
    if not isinstance(proxy, np.ndarray) and hasattr(proxy, "get_unscaled"):
        slope, inter = float(proxy.slope), float(proxy.inter)
        if (slope, inter) != (1.0, 0.0):
            scale = (slope, inter)
        data = np.asanyarray(proxy.get_unscaled())
    else:
        data = np.asanyarray(proxy)
    return _array(data, name), img.affine, scale, name


def _array(x: Any, name: str) -> np.ndarray:
    """``x`` as an ndarray without a copy where it already is one (native byte order needed)."""
    a = np.asarray(x)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def _affine(affine: Any, name: str) -> np.ndarray:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"{name}: the affine must be a 4x4 matrix, not shape {a.shape}")
    return a


def _labels_of(x: Any, what: str) -> Tuple[np.ndarray, Any, Optional[Tuple[float, ...]]]:
    """A label map's voxels, affine (or None) and header zooms (or None)."""
    if isinstance(x, (str, os.PathLike)):
        import nibabel as nib

        x = nib.load(os.fspath(x))
    if _is_nibabel_image(x):
        zooms = tuple(float(abs(z)) for z in x.header.get_zooms()[:3])
        return _array(np.asanyarray(x.dataobj), what), x.affine, zooms
    if isinstance(x, tuple) and len(x) == 2:
        arr, aff = x
        return _array(arr, what), _affine(aff, what), None
    return _array(x, what), None, None
