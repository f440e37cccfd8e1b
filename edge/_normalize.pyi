# Types of the Cython kernel built from csrc/_normalize.pyx.
from typing import Any

import numpy as np
import numpy.typing as npt

def normalize_into(
    image: npt.NDArray[np.uint8] | npt.NDArray[np.uint16],
    lo: float | np.floating[Any],
    inv_span: float | np.floating[Any],
    out: npt.NDArray[np.float32],
) -> None: ...
