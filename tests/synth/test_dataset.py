from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from synth import write_dataset
from synth.cli import add_arguments, run


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_manifest_and_worker_invariance(tmp_path: Path, default):
    a, b = tmp_path / "a", tmp_path / "b"
    write_dataset(a, per_class=3, seed=4, size=96, workers=1, sheet=True)
    write_dataset(b, per_class=3, seed=4, size=96, workers=2, sheet=True)
    assert _tree(a) == _tree(b)  # byte-identical for any worker count
    lines = [json.loads(x) for x in (a / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * len(default.labels)
    for rec in lines:
        data = (a / rec["path"]).read_bytes()
        assert rec["path"] == f"{rec['label']}/{rec['label']}_{rec['index']}.png"
        assert hashlib.sha256(data).hexdigest() == rec["sha256"]
        assert rec["recipe_hash"] == default.hash
        assert (rec["box"] is None) == (rec["label"] == "normal")
    sheet = cv2.imread(str(a / "sheet.png"), cv2.IMREAD_GRAYSCALE)
    assert sheet.shape[0] == 112 * len(default.labels)


def test_fields_written_with_ground_truth(tmp_path: Path, default):
    small = default.replace({"fields.size": [512, 512], "fields.defects": [2, 3]})
    write_dataset(tmp_path, per_class=0, seed=1, recipe=small, fields=2)
    recs = [json.loads(x) for x in (tmp_path / "fields/manifest.jsonl").read_text().splitlines()]
    assert len(recs) == 2
    for rec in recs:
        img = cv2.imread(str(tmp_path / rec["path"]), cv2.IMREAD_UNCHANGED)
        lmap = cv2.imread(str(tmp_path / rec["mask_path"]), cv2.IMREAD_UNCHANGED)
        assert img.shape == lmap.shape == (512, 512)
        assert set(np.unique(lmap)) - {0} == {d["id"] for d in rec["defects"]}


@pytest.mark.parametrize("kw, words", [
    ({"per_class": -1}, "per_class"),
    ({"fields": -2}, "fields"),
    ({"workers": 0}, "workers"),
    ({"size": 8}, "size"),
    ({"recipe": "nope"}, "recipe"),
])
def test_bad_arguments_fail_before_work(tmp_path: Path, kw, words):
    args = {"out": tmp_path / "o", "per_class": 1, "seed": 0, **kw}
    with pytest.raises(ValueError, match=words):
        write_dataset(**args)
    assert not (tmp_path / "o").exists()


def test_non_empty_out_needs_overwrite(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="overwrite"):
        write_dataset(tmp_path, per_class=1, seed=0, size=64)
    write_dataset(tmp_path, per_class=1, seed=0, size=64, overwrite=True)
    assert (tmp_path / "keep.txt").exists() and (tmp_path / "open/open_0.png").exists()


def test_cli(tmp_path: Path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ok = parser.parse_args(["--out", str(tmp_path / "d"), "--per-class", "1", "--seed", "3",
                            "--size", "64", "--no-progress", "--recipe", "shifted"])
    assert run(ok) == 0
    assert (tmp_path / "d/manifest.jsonl").exists()
    bad = parser.parse_args(["--out", str(tmp_path / "d"), "--per-class", "1", "--seed", "3"])
    assert run(bad) == 2
    assert "overwrite" in capsys.readouterr().err
