"""semedge training: datasets, the three models, training loops, stage-1 threshold and
stage-2 calibration, ONNX fp32 / int8 export with a drift gate, evaluation reports, and
the bundle writer. Workstation-only (needs ``semedge[train]``: torch, onnx, onnxruntime).

``import training`` is cheap; torch is imported by the modules that need it.
"""

from __future__ import annotations

__all__: list[str] = []
