"""Export: ONNX fp32 (``onnx``), ONNX Runtime static int8 QDQ (``quantize``) and the
int8 drift gate (``gate``). One format per module; heavy imports stay inside functions."""

from __future__ import annotations

from training.export.gate import ExportRefused, check_drift

__all__ = ["ExportRefused", "check_drift"]
