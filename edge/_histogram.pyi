# Types of the Cython kernel built from csrc/_histogram.pyx.
import numpy as np
import numpy.typing as npt

COUNT_GE: bool
WIDE_RANGE: int

def order_statistics(
    image: npt.NDArray[np.uint8] | npt.NDArray[np.uint16], rank_lo: int, rank_hi: int
) -> tuple[int, int]: ...
