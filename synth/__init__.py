"""Procedural SEM defect image generator.

``render(load_recipe("default"), "open", 0, seed=1)`` returns one image and its ground truth;
``generate(...)`` yields many without touching disk; ``write_dataset(...)`` writes an ImageFolder
dataset with a manifest (what ``semedge synth`` runs). A recipe plus a seed fixes every pixel.
"""

from __future__ import annotations

from synth.compose import Record, render, rle_decode, rle_encode
from synth.dataset import (
    Generator,
    ProceduralGenerator,
    contact_sheet,
    encode_png,
    generate,
    write_dataset,
)
from synth.fields import render_field
from synth.recipe import ALL_LABELS, OTHER, Recipe, derive_seed, load_recipe

__all__ = [
    "ALL_LABELS", "OTHER", "Generator", "ProceduralGenerator", "Recipe", "Record",
    "contact_sheet", "derive_seed", "encode_png", "generate", "load_recipe", "render",
    "render_field", "rle_decode", "rle_encode", "write_dataset",
]
