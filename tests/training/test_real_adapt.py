"""benchmarks/real_adapt.py: near-duplicate grouping, grouped stratified folds and the
7-way score, on made-up images (no real crops needed)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the adaptation benchmark's folds come from "
                                      "scikit-learn (pip install -e '.[dev]')")
pytest.importorskip("scipy", reason="the grouping uses scipy's connected components")


def _scene(seed: int, size: int = 200) -> np.ndarray:
    """Smoothed random blobs: a picture with structure at every scale."""
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 6)
    return cv2.normalize(field, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def _write(path: Path, image: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return str(path)


def test_crops_of_one_picture_share_a_group_and_other_pictures_do_not(load_benchmark, tmp_path):
    ra = load_benchmark("real_adapt")
    paths = []
    for s in range(6):  # two crops of each of six pictures, 3 px apart
        scene = _scene(s)
        paths.append(_write(tmp_path / f"p{s}a.png", scene[0:128, 0:128]))
        paths.append(_write(tmp_path / f"p{s}b.png", scene[3:131, 2:130]))
    groups = ra.near_duplicate_groups(paths)
    for s in range(6):
        assert groups[2 * s] == groups[2 * s + 1], f"the two crops of picture {s} split"
    assert len(set(groups.tolist())) == 6


def test_grouped_folds_keep_each_group_whole_and_every_label_in_every_fold(load_benchmark):
    ra = load_benchmark("real_adapt")
    rng = np.random.default_rng(0)
    labels = ["normal"] * 50 + ["crack"] * 40 + ["short"] * 30
    groups = rng.integers(0, 45, len(labels))  # groups of ~3, some mixing labels
    images = [ra.Image(f"{i}.png", lab, int(g)) for i, (lab, g) in enumerate(zip(labels, groups))]
    folds = ra.assign_folds(images, grouped=True)
    assert set(folds.tolist()) == set(range(ra.FOLDS))
    for g in set(groups.tolist()):
        assert len(set(folds[groups == g].tolist())) == 1, f"group {g} straddles folds"
    for lab in ("normal", "crack", "short"):
        per_fold = np.bincount(folds[np.array(labels) == lab], minlength=ra.FOLDS)
        assert per_fold.min() > 0, f"a fold without {lab}: {per_fold}"
    ungrouped = ra.assign_folds(images, grouped=False)
    assert any(len(set(ungrouped[groups == g].tolist())) > 1 for g in set(groups.tolist()))


def test_the_training_csv_never_lists_the_held_out_fold(load_benchmark, tmp_path):
    ra = load_benchmark("real_adapt")
    images = [ra.Image(str(tmp_path / f"{i}.png"), "normal" if i % 2 else "crack", i)
              for i in range(40)]
    folds = np.arange(40) % ra.FOLDS
    job = ra.Job("finetune", "grouped", 2, 0.5, 0)
    rows = (ra.training_csv(images, folds, job, tmp_path / "t.csv")
            .read_text(encoding="utf-8").splitlines()[1:])
    listed = {r.split(",")[0] for r in rows}
    held_out = {str(Path(im.path).resolve()) for im, f in zip(images, folds) if f == 2}
    assert not listed & held_out
    assert len(rows) == 16  # half of each label of the 32 training images


class _Card:
    def __init__(self, predictions):
        self.predictions = predictions
        self.stage1 = {"recall": 1.0, "specificity": 0.5, "ranking": {"roc_auc": 0.9}}
        self.stage2 = {"end_to_end": {"macro_f1": 0.7, "unknown_share": 0.0}}
        self.out_of_taxonomy = {"unknown_share": 0.5}


def test_seven_way_accuracy_counts_other_defect_right_only_as_unknown(load_benchmark):
    ra = load_benchmark("real_adapt")
    from edge.evaluation import Prediction

    def pred(truth, label):
        return Prediction(path=f"{truth}/{label}.png", truth=truth, label=label, score=0.9,
                          stage1_score=0.9, tiles=1, flagged_tiles=int(label != "normal"),
                          shape=(128, 128), error=None)

    card = _Card([pred("crack", "crack"), pred("normal", "normal"), pred("short", "open"),
                  pred("other_defect", "unknown"), pred("other_defect", "crack")])
    assert ra.scores(card)["accuracy7"] == pytest.approx(3 / 5)


def test_the_plan_runs_each_configuration_once_and_tags_the_budget(load_benchmark):
    ra = load_benchmark("real_adapt")
    jobs = ra.plan((0, 1))
    assert len(jobs) == 2 * (2 * 3 * ra.FOLDS + ra.FOLDS)  # modes × shares + ungrouped, per seed
    assert len({j.tag for j in jobs}) == len(jobs)
    headline = ra.plan((0,), shares=(1.0,))
    assert {(j.mode, j.split) for j in headline} == {("finetune", "grouped"),
                                                     ("scratch", "grouped"),
                                                     ("finetune", "ungrouped")}
    quarter = ra.plan((0,), budget=0.25, shares=(1.0,))
    assert all(j.tag.endswith("-b0.25") for j in quarter)
    assert not {j.tag for j in quarter} & {j.tag for j in headline}


def test_the_plan_runs_only_the_chosen_kinds(load_benchmark):
    ra = load_benchmark("real_adapt")
    jobs = ra.plan((2,), shares=(1.0, 0.5), runs=("finetune",))
    assert {(j.mode, j.split) for j in jobs} == {("finetune", "grouped")}
    assert len(jobs) == 2 * ra.FOLDS
    ungrouped = ra.plan((0,), shares=(0.5,), runs=("ungrouped",))
    assert ungrouped == []  # ungrouped folds are run at 100 % of the labels only


def test_a_failed_run_is_reported_and_the_others_are_kept(load_benchmark, tmp_path, capsys):
    from concurrent.futures import Future

    ra = load_benchmark("real_adapt")
    jobs = ra.plan((0,), shares=(1.0,), runs=("finetune",))[:2]
    broken, done = Future(), Future()
    broken.set_exception(ValueError("out of disk"))
    done.set_result({"tag": jobs[1].tag, "seconds": 1.0, "gate": "passed", "accuracy7": 0.5})
    rows: list[dict] = []
    path = tmp_path / "results.json"
    assert ra._collect(broken, jobs[0], 1, 2, rows, path, 0.0) == jobs[0].tag
    assert ra._collect(done, jobs[1], 2, 2, rows, path, 0.0) is None
    assert [r["tag"] for r in json.loads(path.read_text())] == [jobs[1].tag]
    assert f"{jobs[0].tag} failed: ValueError: out of disk" in capsys.readouterr().out
