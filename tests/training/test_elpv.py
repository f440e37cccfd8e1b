"""The ELPV adapter on a handful of cells (``semedge data elpv``)."""

from __future__ import annotations

import argparse
import csv
import hashlib

import pytest

pytest.importorskip("elpv_dataset", reason="the ELPV data set is not installed "
                                           "(pip install elpv-dataset; CI installs it)")

from training.datasets.elpv import elpv_root, read_labels, split_elpv, write_elpv  # noqa: E402
from training.ingest import scan  # noqa: E402


def test_the_full_split_is_the_deitsch_protocol():
    rows = read_labels()
    assert len(rows) == 2624
    test = split_elpv(rows, seed=0)
    assert int(test.sum()) == 656 and int((~test).sum()) == 1968
    # stratified by probability × type: each stratum within one cell of 25 %
    for p in (0.0, 1 / 3, 2 / 3, 1.0):
        for kind in ("mono", "poly"):
            idx = [i for i, r in enumerate(rows)
                   if abs(r["probability"] - p) < 1e-6 and r["type"] == kind]
            assert abs(test[idx].sum() - 0.25 * len(idx)) <= 1
    assert (split_elpv(rows, seed=0) == test).all()
    assert not (split_elpv(rows, seed=1) == test).all()


def test_a_handful_of_cells_becomes_a_stage1_image_folder(tmp_path):
    out = tmp_path / "elpv"
    summary = write_elpv(out, limit=24, seed=0)
    assert summary["counts"] == {"train": 18, "test": 6}
    rows = list(csv.DictReader(open(out / "split.csv", encoding="utf-8")))
    root = elpv_root()
    for row in rows:
        want = "defective" if float(row["probability"]) >= 0.5 else "normal"
        assert row["label"] == want
        copied = (out / row["file"]).read_bytes()
        assert hashlib.sha256(copied).digest() == hashlib.sha256(
            (root / row["path"]).read_bytes()).digest()
    for split in ("train", "test"):
        report = scan(out / split, size=224)
        assert report.ok, report.lines()
        assert set(report.shapes) == {(300, 300)} and set(report.dtypes) == {"uint8"}
    assert not set(scan(out / "train").sha256) & set(scan(out / "test").sha256)


def test_four_classes_and_the_cli(tmp_path, capsys):
    from training.cli import add_data_arguments, run_data

    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    out = tmp_path / "four"
    args = parser.parse_args(["elpv", "--out", str(out), "--classes", "four", "--limit", "40"])
    assert run_data(args) == 0
    labels = {p.name for p in (out / "train").iterdir()} | {p.name for p in
                                                             (out / "test").iterdir()}
    assert labels <= {"p0", "p33", "p67", "p100"}
    assert "train 30, test 10" in capsys.readouterr().out


def test_benchmark_summary_leaves_refused_runs_out_and_counts_them():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "elpv_benchmark.py"
    spec = importlib.util.spec_from_file_location("elpv_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [{"mode": "init", "fraction": 0.1, "seed": 0, "accuracy": 0.7},
            {"mode": "init", "fraction": 0.1, "seed": 1, "accuracy": 0.8},
            {"mode": "init", "fraction": 0.1, "seed": 2, "refused": "drift"}]
    (row,) = bench.summarize(rows, ["accuracy"])
    assert row["seeds"] == 2 and row["refused"] == 1
    assert row["accuracy"]["mean"] == pytest.approx(0.75)
