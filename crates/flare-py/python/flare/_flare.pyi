"""Type stubs of the native module `flare._flare` (Rust, PyO3). Use the `flare` package's API;
this module is its engine room."""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

BUILTIN: str

class NativeModel:
    def __init__(
        self, path: str, threads: Optional[int] = None, precision: str = "fp32"
    ) -> None: ...
    def describe(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def origin(self) -> str: ...
    @property
    def threads(self) -> Optional[int]: ...
    def segment_path(
        self,
        path: str,
        series: Optional[str] = None,
        largest_components: bool = True,
        fill_holes: bool = True,
    ) -> Dict[str, Any]: ...
    def segment_array(
        self,
        array: npt.NDArray[Any],
        affine: npt.NDArray[np.float64],
        scale: Optional[Tuple[float, float]] = None,
        name: str = "array",
        largest_components: bool = True,
        fill_holes: bool = True,
    ) -> Dict[str, Any]: ...

def evaluate_files(
    pred: str, gt: str, tolerances_mm: Sequence[float], threads: Optional[int] = None
) -> Dict[str, Any]: ...
def evaluate_arrays(
    pred: npt.NDArray[Any],
    gt: npt.NDArray[Any],
    spacing_mm: Sequence[float],
    tolerances_mm: Sequence[float],
    threads: Optional[int] = None,
) -> Dict[str, Any]: ...
def organ_names() -> List[str]: ...
