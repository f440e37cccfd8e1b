"""The labelling queue of ``semedge eval --queue``: what comes first, the CSV, and that
``semedge train --labels`` reads it back."""

from __future__ import annotations

import csv
import math

import pytest

from edge.evaluation import Prediction
from edge.label_queue import label_queue, write_queue_csv


def pred(truth, label, score, s1, path):
    return Prediction(path=path, truth=truth, label=label, score=score, stage1_score=s1,
                      tiles=1, flagged_tiles=int(label != "normal"), shape=(224, 224))


PREDICTIONS = [
    pred("normal", "normal", 0.99, 0.01, "normal/sure.png"),       # far under the threshold
    pred("normal", "normal", 0.91, 0.09, "normal/close.png"),      # just under 0.1
    pred("open", "open", 0.55, 0.9, "open/unsure.png"),
    pred("open", "open", 0.97, 0.9, "open/sure.png"),
    pred("open", "short", 0.8, 0.9, "open/confident_wrong.png"),
    pred("ler", "normal", 0.95, 0.05, "ler/missed.png"),
    pred("scratch", "unknown", 0.3, 0.9, "scratch/right.png"),
    Prediction(path="void/broken.png", truth="void", label="", score=math.nan,
               stage1_score=math.nan, error="unreadable"),
]


def test_wrong_answers_first_most_confident_first_then_least_sure():
    queue = label_queue(PREDICTIONS, 6, threshold=0.1)
    assert [q.prediction.path for q in queue] == [
        "ler/missed.png", "open/confident_wrong.png",        # wrong: score 0.95, 0.8
        "normal/close.png", "scratch/right.png",             # sureness 0.1, 0.3
        "open/unsure.png", "normal/sure.png"]                # 0.55, 0.9
    assert [q.why for q in queue[:3]] == ["missed", "wrong_class", "unsure"]
    assert all(q.prediction.ok for q in label_queue(PREDICTIONS, 100, threshold=0.1))


def test_csv_is_read_back_by_training_and_never_overwritten(tmp_path):
    ingest = pytest.importorskip("training.ingest")
    data = tmp_path / "data"
    for p in PREDICTIONS:
        (data / p.path).parent.mkdir(parents=True, exist_ok=True)
        (data / p.path).write_bytes(b"")
    out = tmp_path / "queues" / "next.csv"
    out.parent.mkdir()
    write_queue_csv(label_queue(PREDICTIONS, 4, threshold=0.1), data, out)
    rows = list(csv.reader(out.read_text(encoding="utf-8").splitlines()))
    assert rows[0] == ["path", "label", "answer", "score", "why"]
    assert rows[1] == ["../data/ler/missed.png", "ler", "normal", "0.9500", "missed"]
    assert rows[4][:2] == ["../data/scratch/right.png", "other_defect"]  # out of taxonomy
    report = ingest.IngestReport(root=out.parent)
    listed = ingest._listing_from_csv(out, report)
    assert not report.errors
    assert [(p.resolve(), label) for p, label in listed] == [
        ((data / r[0][len("../data/"):]).resolve(), r[1]) for r in rows[1:]]
    with pytest.raises(FileExistsError):
        write_queue_csv([], data, out)
