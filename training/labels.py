"""Training labels: the integer each label folder (or CSV label) trains as, the image
suffixes read from a labelled folder, and the error for a folder that cannot be used.

Shared by :mod:`training.data` (loading tiles) and :mod:`training.ingest` (the pre-flight
scan), so that neither imports the other.
"""

from __future__ import annotations

from edge.classes import CLASSES, DEFECT_CLASSES

__all__ = [
    "DEFECTIVE",
    "DEFECTIVE_FOLDER",
    "IMAGE_SUFFIXES",
    "LABELS",
    "LABEL_NAMES",
    "OTHER_DEFECT",
    "OTHER_DEFECT_FOLDER",
    "OTHER_OUTPUT",
    "DatasetError",
]

OTHER_DEFECT = -1
"""Label of an out-of-taxonomy defect (folder ``other_defect``)."""
OTHER_DEFECT_FOLDER = "other_defect"
OTHER_OUTPUT = len(DEFECT_CLASSES)
"""Stage 2's output (and target) index for ``other_defect`` when it has an other output."""
DEFECTIVE = -2
"""Label of a defective image whose class is not given (folder ``defective``)."""
DEFECTIVE_FOLDER = "defective"
LABELS: dict[str, int] = ({c: i for i, c in enumerate(CLASSES)}
                          | {OTHER_DEFECT_FOLDER: OTHER_DEFECT, DEFECTIVE_FOLDER: DEFECTIVE})
"""Label name (folder name or CSV label) → integer label used in training."""
LABEL_NAMES: dict[int, str] = {v: k for k, v in LABELS.items()}
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
"""Files read from a label folder."""


class DatasetError(ValueError):
    """An ImageFolder that cannot be used for training (the message says why)."""
