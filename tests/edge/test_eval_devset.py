"""The dev-set scorecard: ``semedge eval`` on the 752 real SEM crops of
``../shared/data/sem-real-dev`` (evaluation only, read at run time, never copied).

These tests REPORT the numbers (printed in the test log) and do not gate on them; they
assert what must hold whatever the model: every image read, no error, the counts per
folder, a valid JSON document and the plots. With the default bundle absent (it is
trained separately) the scorecard test skips and says so; the pipeline is still run on
the real images with a small test bundle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import pytest
from bundle_factory import make_bundle

from edge.bundle import default_bundle_path
from edge.cli import main
from edge.evaluation import SCHEMA, scan_data

REPO = Path(__file__).resolve().parents[2]
DEV_SET = Path(os.environ.get("SEMEDGE_REAL_DEV", REPO.parent / "shared" / "data" / "sem-real-dev"))

EXPECTED = {"normal": 135, "ler": 87, "open": 80, "short": 57, "malformed_via": 58,
            "crack": 98, "other_defect": 237}
"""Images per folder, from the data set's README."""

needs_dev_set = pytest.mark.skipif(
    not DEV_SET.is_dir(),
    reason=f"real dev set not found at {DEV_SET} (set SEMEDGE_REAL_DEV to its folder)")


def _run_eval(tmp_path, *extra):
    json_path, plots = tmp_path / "scorecard.json", tmp_path / "plots"
    argv = ["eval", "--data", str(DEV_SET), "--json", str(json_path), "--no-progress",
            *extra]
    if _has_matplotlib():
        argv += ["--plots", str(plots)]
    code = main(argv)
    doc = json.loads(json_path.read_text(),
                     parse_constant=lambda c: pytest.fail(f"non-standard JSON: {c}"))
    return code, doc, plots


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _check_document(code, doc, plots):
    assert code == 0, doc["errors"][:3]
    assert doc["schema"] == SCHEMA
    assert doc["data"]["images"] == doc["data"]["read"] == 752
    assert doc["data"]["errors"] == 0 and doc["errors"] == []
    assert doc["data"]["folders"] == EXPECTED
    assert doc["data"]["out_of_taxonomy_folders"] == ["other_defect"]
    assert doc["data"]["missing_classes"] == ["void"]
    assert len(doc["predictions"]) == 752
    s1 = doc["stage1"]
    assert s1["tp"] + s1["fn"] == 752 - 135 and s1["tn"] + s1["fp"] == 135
    assert doc["stage2"]["end_to_end"]["images"] == 752 - 135 - 237
    assert doc["out_of_taxonomy"]["images"] == 237
    assert doc["run"]["small_image"] == "upscale"
    if _has_matplotlib():
        for name in ("confusion.png", "stage1.png", "worst_mistakes.png"):
            assert cv2.imread(str(plots / name)) is not None, name


def _report(doc) -> str:
    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    s1, e2e = doc["stage1"], doc["stage2"]["end_to_end"]
    given, oot = doc["stage2"]["given_flagged"], doc["out_of_taxonomy"]
    lines = [
        f"dev-set scorecard — bundle {doc['run']['bundle']['name']!r} "
        f"({doc['run']['backend']}), {doc['data']['read']} images, "
        f"{doc['run']['seconds']:.1f} s",
        f"  stage 1: recall {f(s1['recall'])}, precision {f(s1['precision'])}, "
        f"specificity {f(s1['specificity'])} (TP {s1['tp']} FN {s1['fn']} TN {s1['tn']} "
        f"FP {s1['fp']})",
        f"  stage 2 macro-F1 over {', '.join(e2e['classes'])}: end to end "
        f"{f(e2e['macro_f1'])}, given flagged {f(given['macro_f1'])}; "
        f"unknown share {f(e2e['unknown_share'])}",
        "  per class (P/R end to end): " + ", ".join(
            f"{c} {f(r['precision'])}/{f(r['recall'])}" for c, r in e2e["per_class"].items()),
        f"  out of taxonomy: flagged {f(oot['flagged_share'])}, unknown of flagged "
        f"{f(oot['unknown_share_of_flagged'])}",
    ]
    return "\n".join(lines)


@needs_dev_set
def test_scan_finds_every_dev_image():
    data = scan_data(DEV_SET)
    assert data.folders == EXPECTED and len(data) == 752 and data.ignored == ()


@needs_dev_set
@pytest.mark.slow
def test_dev_set_scorecard_with_the_default_bundle(tmp_path, capsys):
    """The number the project is measured by (reported, not gated)."""
    if not (default_bundle_path() / "manifest.json").is_file():
        pytest.skip(f"no default bundle at {default_bundle_path()} (trained separately; "
                    "scripts/build-default-bundle); the dev-set scorecard is not measured")
    code, doc, plots = _run_eval(tmp_path, "--target", "auto")
    with capsys.disabled():
        print("\n" + _report(doc))
    _check_document(code, doc, plots)
    assert doc["run"]["bundle"]["path"] == str(default_bundle_path())


@needs_dev_set
@pytest.mark.slow
def test_dev_set_runs_end_to_end_with_a_test_bundle(tmp_path, capsys):
    """The pipeline on the real images (every file read, small crops upscaled, JSON,
    plots) — independent of the default bundle; its numbers mean nothing."""
    bundle = make_bundle(tmp_path / "bundle")
    code, doc, plots = _run_eval(tmp_path, "--bundle", str(bundle), "--target", "x86-cpu")
    capsys.readouterr()
    _check_document(code, doc, plots)
    assert all(p["shape"] == [128, 128] and p["tiles"] == 1 for p in doc["predictions"])
