"""The shipped bundle on clean synthetic fields: stage 1 must turn normal tiles away.

Clean fields are rendered by the default recipe with no defect, 2048×2048, three per
pattern family (``synth.fields.FIELD_FAMILIES``), seed 20261207 (fixed, never chosen by
how a model does on them). The cascade's cost depends on the flag rate stage 1 really has
on such tiles, so the target is at most 5 % of their tiles flagged, in every family.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import synth
from edge import load
from synth.fields import FIELD_FAMILIES, render_field

SEED = 20261207
FIELDS_PER_FAMILY = 3
MAX_FLAG_SHARE = 0.05


def _render(family: str, index: int) -> np.ndarray:
    recipe = synth.load_recipe("default").replace({"fields.defects": [0, 0]})
    image, label_map, record = render_field(recipe, index, SEED, size=2048, family=family)
    assert record["family"] == family and not record["defects"] and not label_map.any()
    return image


@functools.cache
def _clean_field(family: str, index: int) -> np.ndarray:
    """One clean field, rendered once for the module's tests."""
    return _render(family, index)


def flag_share(cascade, family: str) -> float:
    """Share of the tiles of the family's clean fields that stage 1 flags."""
    flagged = [cascade.classify(_clean_field(family, k)).flagged
               for k in range(FIELDS_PER_FAMILY)]
    return float(np.mean(np.concatenate(flagged)))


@pytest.fixture(scope="module")
def shipped():
    return load(target="x86-cpu")


def test_clean_fields_are_clean_and_of_the_asked_family():
    a, b = _render("vias", 0), _render("vias", 0)
    assert np.array_equal(a, b) and a.shape == (2048, 2048)
    with pytest.raises(ValueError, match="unknown field family"):
        render_field(synth.load_recipe("default"), 0, SEED, family="bumps")


def test_flag_share_counts_flagged_tiles(shipped, monkeypatch):
    # the measure itself: a threshold above every score flags nothing, below every one all
    monkeypatch.setattr(shipped, "threshold", 1.01)
    assert flag_share(shipped, "lines") == 0.0
    monkeypatch.setattr(shipped, "threshold", -0.01)
    assert flag_share(shipped, "lines") == 1.0


@pytest.mark.xfail(strict=True, reason="the shipped stage 1 flags 76 % of clean-field tiles "
                   "(2026-12-07: lines 78 %, routed 51 %, vias 100 %; docs/training.md); "
                   "strict: this fails as soon as a rebuilt bundle meets the 5 % target")
@pytest.mark.parametrize("family", list(FIELD_FAMILIES))
def test_shipped_stage1_flags_at_most_5_percent_of_clean_field_tiles(shipped, family):
    assert flag_share(shipped, family) <= MAX_FLAG_SHARE
