# Types of the Cython kernel built from csrc/_tiling.pyx.
from typing import Any

import numpy as np
import numpy.typing as npt

OPENMP: bool
STREAM_MIN_BYTES: int

def tile_into(
    image: npt.NDArray[np.uint8] | npt.NDArray[np.uint16],
    lo: float | np.floating[Any],
    inv_span: float | np.floating[Any],
    size: int, stride: int, rows: int, cols: int, out: npt.NDArray[np.float32],
    threads: int = 1,
) -> None: ...
