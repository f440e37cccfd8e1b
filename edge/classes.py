"""The defect classes, in the order of ``docs/classes.md`` (index = model output index)."""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("normal", "ler", "open", "short", "void", "malformed_via", "crack")
"""All seven labels; index 0 is ``normal``."""

DEFECT_CLASSES: tuple[str, ...] = CLASSES[1:]
"""The six defect labels, in stage-2 output order."""

UNKNOWN = "unknown"
"""Label of a tile whose stage-2 confidence is under the bundle's threshold."""

DEFECTIVE = "defective"
"""Label of a flagged tile or image from a stage-1-only (binary) bundle: no stage 2 names
the defect."""
