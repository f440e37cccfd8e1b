"""The semedge CLI: classify (JSON, table, overlays), targets, info, workstation commands."""

from __future__ import annotations

import json
import sys
import types

import cv2
import numpy as np
import pytest
from bundle_factory import field_image

from edge import _workstation
from edge.cli import collect_files, main, samples_dir


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "images"
    (root / "lot1" / "deep").mkdir(parents=True)
    cv2.imwrite(str(root / "a.png"), field_image(2, 2, [(1, 1)]))
    cv2.imwrite(str(root / "lot1" / "b.tif"), field_image(3, 2, dtype=np.uint16))
    cv2.imwrite(str(root / "lot1" / "deep" / "c.png"), field_image(1, 1))
    (root / "lot1" / "notes.txt").write_text("not an image")
    return root


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_collect_files_recurses_folders_and_keeps_named_files(folder, tmp_path):
    named = tmp_path / "x.weird"
    found = [p.relative_to(folder).as_posix() for p in collect_files([str(folder)])]
    assert found == ["a.png", "lot1/b.tif", "lot1/deep/c.png"]
    assert list(collect_files([str(named)])) == [named]


def test_classify_json_one_object_per_image(capsys, folder, bundle_dir):
    code, out, err = run(capsys, "classify", str(folder), "--bundle", str(bundle_dir),
                         "--target", "x86-cpu", "--json")
    assert code == 0, err
    objs = [json.loads(line) for line in out.splitlines()]
    assert [o["path"].endswith(n) for o, n in zip(objs, ["a.png", "b.tif", "c.png"])] == [True] * 3
    first = objs[0]
    assert set(first) == {"path", "label", "score", "tiles", "timings_ms", "backend"}
    assert first["label"] == "short" and first["backend"] == "onnxruntime:CPUExecutionProvider:fp32"
    assert len(first["tiles"]) == 4 and set(first["tiles"][0]) == {"box", "label", "score"}
    assert first["tiles"][3] == {"box": [224, 224, 448, 448], "label": "short",
                                 "score": pytest.approx(0.8, abs=0.01)}
    assert {"read", "tile", "stage1", "stage2", "total"} == set(first["timings_ms"])
    assert "target x86-cpu" in err


def test_bad_file_gives_error_object_and_nonzero_exit(capsys, folder, bundle_dir):
    bad = folder / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnope")
    code, out, _ = run(capsys, "classify", str(folder / "a.png"), str(bad),
                       str(folder / "gone.png"), str(folder / "lot1"),
                       "--bundle", str(bundle_dir), "--target", "x86-cpu", "--json")
    assert code == 1
    objs = [json.loads(line) for line in out.splitlines()]
    assert len(objs) == 5
    errors = [o for o in objs if "error" in o]
    assert [set(o) for o in errors] == [{"path", "error"}] * 2
    assert errors[0]["path"] == str(bad) and str(bad) in errors[0]["error"]


def test_table_and_summary(capsys, folder, bundle_dir):
    code, out, _ = run(capsys, "classify", str(folder), "--bundle", str(bundle_dir),
                       "--target", "x86-cpu")
    assert code == 0
    assert "3 images" in out and "normal: 2" in out and "short: 1" in out


def test_overlays_are_written_as_png(capsys, folder, bundle_dir, tmp_path):
    out_dir = tmp_path / "overlays"
    code, _, _ = run(capsys, "classify", str(folder), "--bundle", str(bundle_dir),
                     "--target", "x86-cpu", "--overlay", str(out_dir), "--json")
    assert code == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.png", "b.png", "c.png"]
    overlay = cv2.imread(str(out_dir / "a.png"), cv2.IMREAD_UNCHANGED)
    assert overlay.shape == (448, 448, 3)
    flagged = overlay[224:448, 224:448]
    assert (flagged[:, :, 0] != flagged[:, :, 2]).any()  # a coloured box was drawn
    plain = cv2.imread(str(out_dir / "c.png"), cv2.IMREAD_UNCHANGED)
    assert (plain[:, :, 0] == plain[:, :, 2]).all()      # nothing flagged, nothing drawn


def test_setup_errors_exit_2_with_a_message(capsys, folder, tmp_path, bundle_dir, without_tflite):
    code, _, err = run(capsys, "classify", str(folder), "--bundle", str(tmp_path / "none"))
    assert code == 2 and "bundle folder does not exist" in err
    code, _, err = run(capsys, "classify", str(folder), "--bundle", str(bundle_dir),
                       "--target", "coral-usb")
    assert code == 2 and "pip install ai-edge-litert" in err
    code, _, err = run(capsys, "classify", str(folder), "--bundle", str(bundle_dir),
                       "--provider", "CUDAExecutionProvider")
    assert code == 2 and "'CUDAExecutionProvider' was requested" in err
    code, _, err = run(capsys, "classify", str(tmp_path / "empty_dir_missing"), "--bundle",
                       str(bundle_dir), "--json")
    assert code == 1  # a missing path is a failed file


def test_targets_lists_all_profiles(capsys, without_tflite):
    code, out, _ = run(capsys, "targets", "--json")
    rows = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert code == 0 and len(rows) == 6
    assert rows["x86-cpu"]["runs_here"] and rows["x86-cpu"]["auto"]
    assert not rows["coral-usb"]["runs_here"] and "ai-edge-litert" in rows["coral-usb"]["reason"]
    assert rows["rpi5"]["status"].startswith("fallback")
    code, out, _ = run(capsys, "targets")
    assert code == 0 and "jetson-orin" in out and "auto → x86-cpu" in out


def test_info(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0
    assert "semedge 0.1.0" in out and "OpenMP" in out and "backend onnxruntime: available" in out
    assert "default bundle:" in out


def test_workstation_command_missing_module_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setitem(_workstation.COMMANDS, "synth",
                        _workstation.Command("no_such_pkg.cli", "add_arguments", "run", "x"))
    code, _, err = run(capsys, "synth", "--out", "x")
    assert code == 2 and "pip install 'semedge[train]'" in err and "no_such_pkg" in err


def test_workstation_command_missing_torch_says_what_to_install(capsys, monkeypatch):
    fake = types.ModuleType("fake_training_cli")

    def __getattr__(name):
        raise ImportError("No module named 'torch'", name="torch")
    fake.__getattr__ = __getattr__
    monkeypatch.setitem(sys.modules, "fake_training_cli", fake)
    monkeypatch.setitem(_workstation.COMMANDS, "train", _workstation.Command(
        "fake_training_cli", "add_train_arguments", "run_train", "train"))
    code, _, err = run(capsys, "train")
    assert code == 2 and "missing: torch" in err and "semedge[train]" in err


def test_workstation_command_is_delegated_with_its_arguments(capsys, monkeypatch):
    fake = types.ModuleType("fake_synth_cli")
    seen = {}
    fake.add_arguments = lambda p: p.add_argument("--out")
    fake.run = lambda args: seen.setdefault("out", args.out) and 0
    monkeypatch.setitem(sys.modules, "fake_synth_cli", fake)
    monkeypatch.setitem(_workstation.COMMANDS, "synth", _workstation.Command(
        "fake_synth_cli", "add_arguments", "run", "synth"))
    code, _, _ = run(capsys, "synth", "--out", "/tmp/x")
    assert code == 0 and seen == {"out": "/tmp/x"}


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("info", "targets", "classify", "synth", "train", "export"):
        assert name in out


def test_classify_samples_runs_on_the_shipped_images(capsys, bundle_dir):
    code, out, _ = run(capsys, "classify", "--samples", "--bundle", str(bundle_dir), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    truth = json.loads((samples_dir() / "samples.json").read_text())
    assert code == 0 and sorted(r["path"].split("/")[-1] for r in rows) == sorted(truth["images"])
    fields = [r for r in rows if r["path"].endswith("field_0.png")]
    assert len(fields[0]["tiles"]) == 25  # 1024 px at 224-px tiles: a 5 × 5 grid


def test_classify_samples_table_shows_file_names_and_truth(capsys, bundle_dir, monkeypatch,
                                                           tmp_path):
    monkeypatch.chdir(tmp_path)  # far from the package: paths would be long
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run(capsys, "classify", "--samples", "--bundle", str(bundle_dir))
    truth = json.loads((samples_dir() / "samples.json").read_text())["images"]
    assert code == 0 and "truth" in out
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.split() and line.split()[0].endswith(".png")}
    assert set(rows) == set(truth)  # whole file names, no site-packages path
    assert rows["tile_3_short.png"].split()[1] == "short"
    for name, t in truth.items():
        expected = t["label"]
        if t["label"] == "field":
            expected = ", ".join(sorted({d["label"] for d in t["defects"]})) or "normal"
        assert rows[name].split(maxsplit=1)[1].startswith(expected + " ")


def test_classify_of_other_files_has_no_truth_column(capsys, bundle_dir, folder):
    code, out, _ = run(capsys, "classify", str(folder), "--bundle", str(bundle_dir))
    assert code in (0, 1) and "truth" not in out


def test_classify_without_paths_or_samples_is_an_error(capsys, bundle_dir):
    code, _, err = run(capsys, "classify", "--bundle", str(bundle_dir))
    assert code == 2 and "--samples" in err


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """``semedge info | head -1``: the pipe closes, the command ends quietly (exit 141)."""
    import subprocess
    import sys

    # the child writes only after the parent has closed its end of the pipe
    code = "import sys; sys.stdin.read(); from edge.cli import main; sys.exit(main(['info']))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()
    proc.stdin.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
