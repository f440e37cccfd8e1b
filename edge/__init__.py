"""semedge on-device runtime: SEM preprocessing kernels and the two-stage defect cascade.

``import edge; cascade = edge.load()`` loads the default bundle shipped in the package.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

# Before anything can import onnxruntime: with telemetry on, merely importing it writes
# ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ and, seconds later, sends DNS queries
# for a telemetry host. Every ``edge.*`` module (and so every import of onnxruntime in
# the runtime) is imported after this package, so this one line covers them all.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from edge.classes import CLASSES, DEFECT_CLASSES, UNKNOWN

if TYPE_CHECKING:
    from edge.bundle import Bundle, PathLike
    from edge.cascade import Cascade
    from edge.profiles import Profile

__version__ = "0.1.0"
__all__ = ["CLASSES", "DEFECT_CLASSES", "UNKNOWN", "__version__", "load"]


def load(bundle: Bundle | PathLike | None = None, *, target: str | Profile = "auto",
         providers: Sequence[str] | None = None) -> Cascade:
    """Load a model bundle (``None``: the shipped default) as a ready-to-run cascade.

    Same parameters as :func:`edge.cascade.load` (``providers=[...]``: execution providers
    instead of the target profile's).
    """
    from edge.cascade import load as _load  # keeps `import edge` light

    return _load(bundle, target=target, providers=providers)
