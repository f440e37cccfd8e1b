"""Class-conditioned diffusion synthesis: a small UNet trained on an ImageFolder, sampled
into the same ImageFolder layout and ``manifest.jsonl`` as the procedural engine.

Workstation-only. ``import synth.diffusion`` imports neither torch nor diffusers; the
modules that need them (``model``, ``store``, ``train``, ``sample``, ``writer``) import
them when imported themselves. Commands: ``semedge synth-train --engine diffusion`` and
``semedge synth --engine diffusion`` (docs/synth.md, "Diffusion engine").
"""

from __future__ import annotations

from synth.diffusion.config import FORMAT, LABELS, NULL_CLASS, Architecture

__all__ = ["FORMAT", "LABELS", "NULL_CLASS", "Architecture"]
