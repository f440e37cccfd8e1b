from __future__ import annotations

from pathlib import Path

import pytest

from edge.classes import CLASSES
from synth import load_recipe


def test_builtin_recipes_validate_and_differ():
    d, s = load_recipe("default"), load_recipe("shifted")
    assert d.name == "default" and s.name == "shifted"
    assert d.hash != s.hash and len(d.hash) == 64
    assert load_recipe("default").hash == d.hash  # stable
    for key in ("scene.pitch_px", "sem.dose", "sem.blur_px", "sem.inverted_prob", "sem.contrast"):
        assert d.get(key) != s.get(key), key
    assert d.labels == (*CLASSES, "other_defect")


def test_file_recipe_inherits_and_overrides(tmp_path: Path):
    f = tmp_path / "mine.toml"
    f.write_text('base = "default"\n[recipe]\nname = "mine"\n[sem]\ndose = [5.0, 10.0]\n'
                 "[classes.other_defect]\nenabled = false\n")
    r = load_recipe(f)
    assert r.name == "mine" and r.get("sem.dose") == [5.0, 10.0]
    assert r.get("sem.blur_px") == load_recipe("default").get("sem.blur_px")
    assert r.labels == CLASSES


@pytest.mark.parametrize("body, words", [
    ("[sem]\ndoze = [1.0, 2.0]\n", "sem.doze"),
    ("[sem]\ndose = [9.0, 2.0]\n", "sem.dose"),
    ("[sem]\ninverted_prob = 1.5\n", "sem.inverted_prob"),
    ("[recipe]\nbit_depth = 12\n", "bit_depth"),
    ("[classes.ler.families]\nvias = 1.0\n", "classes.ler.families.vias"),
    ("[defects.malformed_via]\ntop_kinds = [\"square\"]\n", "top_kinds"),
    ("[defects.open]\ncount = [-1, 2]\n", "defects.open.count"),
    ("[sem]\nframes = [0.0, 4.0]\n", "sem.frames"),
])
def test_bad_recipes_name_the_key(tmp_path: Path, body: str, words: str):
    f = tmp_path / "bad.toml"
    f.write_text('base = "default"\n' + body)
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        load_recipe(f)


def test_unknown_recipe_name():
    with pytest.raises(ValueError, match="built-in"):
        load_recipe("nope")


def test_replace_rejects_unknown_key(default):
    with pytest.raises(ValueError, match="unknown recipe key 'sem.nope'"):
        default.replace({"sem.nope": 1})
