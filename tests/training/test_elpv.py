"""The ELPV adapter on a handful of cells (``semedge data elpv``)."""

from __future__ import annotations

import argparse
import csv
import hashlib

import pytest

pytest.importorskip("elpv_dataset", reason="the ELPV data set is not installed "
                                           "(pip install elpv-dataset; CI installs it)")

from training.datasets.elpv import elpv_root, read_labels, split_elpv, write_elpv
from training.ingest import scan


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


def test_benchmark_summary_leaves_refused_runs_out_and_counts_them(load_benchmark):
    bench = load_benchmark("elpv_benchmark")
    rows = [{"mode": "init", "fraction": 0.1, "seed": 0, "accuracy": 0.7},
            {"mode": "init", "fraction": 0.1, "seed": 1, "accuracy": 0.8},
            {"mode": "init", "fraction": 0.1, "seed": 2, "refused": "drift"}]
    (row,) = bench.summarize(rows, ["accuracy"])
    assert row["seeds"] == 2 and row["refused"] == 1
    assert row["accuracy"]["mean"] == pytest.approx(0.75)


def test_benchmark_merges_earlier_parts_of_the_same_schedule_only(load_benchmark, tmp_path):
    import json

    bench = load_benchmark("elpv_benchmark")

    def results(name, epochs, samples, rows, four=()):
        path = tmp_path / name
        path.write_text(json.dumps({"binary": rows, "four": list(four), "settings": {
            "epochs": str(epochs), "samples_per_epoch": str(samples)}}))
        return path

    a = results("a.json", 30, 8192, [
        {"mode": "scratch", "fraction": 1.0, "seed": 0, "accuracy": 0.80},
        {"mode": "scratch", "fraction": 1.0, "seed": 1, "accuracy": 0.70}])
    b = results("b.json", 30, 8192, [
        {"mode": "scratch", "fraction": 1.0, "seed": 1, "accuracy": 0.75}])
    now = {"binary": [{"mode": "scratch", "fraction": 1.0, "seed": 2, "accuracy": 0.9},
                      {"mode": "scratch", "fraction": 1.0, "seed": 0, "accuracy": 0.85}],
           "four": []}
    merged = bench.merge_runs(now, [a, b], epochs=30, samples=8192)
    by_seed = {r["seed"]: r for r in merged["binary"]}
    assert sorted(by_seed) == [0, 1, 2]
    assert by_seed[0]["accuracy"] == 0.85 and "from" not in by_seed[0]  # this run wins
    assert by_seed[1]["accuracy"] == 0.75 and by_seed[1]["from"] == str(b)  # later file wins
    (row,) = bench.summarize(merged["binary"], ["accuracy"])
    assert row["seeds"] == 3 and row["accuracy"]["mean"] == pytest.approx(0.8333333)
    other = results("c.json", 30, 2048, [])
    with pytest.raises(SystemExit, match="2048"):
        bench.merge_runs(now, [other], epochs=30, samples=8192)
    balanced = results("d.json", 30, 8192, [], four=[
        {"mode": "scratch", "fraction": 1.0, "seed": 0, "accuracy": 0.62}])
    with pytest.raises(SystemExit, match="sampled balanced, not natural"):
        bench.merge_runs(now, [balanced], epochs=30, samples=8192)
