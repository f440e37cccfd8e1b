"""The device part of a bundle (``edge.device_bundle``, ``semedge device-bundle``): int8
models only, the same answers as the full bundle, and clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bundle_factory import make_bundle

import edge
from edge import _workstation
from edge.bundle import FORMATS, BundleError, load_bundle
from edge.cli import main
from edge.device_bundle import (
    DEVICE_FORMATS,
    DeviceBundleError,
    device_manifest,
    write_device_bundle,
)


@pytest.fixture(scope="module")
def full_bundle(tmp_path_factory) -> Path:
    """fp32 + int8 models of all three stages, with checkpoint and split entries."""
    root = make_bundle(tmp_path_factory.mktemp("full"), formats=("onnx", "onnx-int8"),
                       monolithic=True, stage1_slope=40.0)
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "stage1.pt").write_bytes(b"weights")
    (root / "splits.json").write_text("{}")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["checkpoints"] = {"stage1": {"path": "checkpoints/stage1.pt", "sha256": "0" * 64}}
    manifest["splits"] = {"path": "splits.json", "sha256": "0" * 64}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_device_formats_are_bundle_formats_without_fp32():
    assert set(DEVICE_FORMATS) <= set(FORMATS)
    assert "onnx" not in DEVICE_FORMATS


def test_device_bundle_keeps_int8_only_and_drops_workstation_files(full_bundle, tmp_path):
    out = tmp_path / "device"
    written = write_device_bundle(full_bundle, out)
    names = sorted(p.relative_to(out).as_posix() for p in written)
    assert names == ["manifest.json", "monolithic.int8.onnx", "stage1.int8.onnx",
                     "stage2.int8.onnx"]
    slim = load_bundle(out)  # hashes verified
    assert {s: slim.formats(s) for s in slim.files} == {
        "stage1": ("onnx-int8",), "stage2": ("onnx-int8",), "monolithic": ("onnx-int8",)}
    assert "checkpoints" not in slim.manifest and "splits" not in slim.manifest
    assert slim.manifest["device_build"] == {"dropped_formats": ["onnx"],
                                             "dropped_keys": ["checkpoints", "splits"]}
    full = json.loads((full_bundle / "manifest.json").read_text())
    assert slim.manifest["stage1"] == full["stage1"] and slim.manifest["metrics"] == full["metrics"]


def test_device_bundle_answers_like_the_full_bundle(full_bundle, tmp_path, cpu_profile):
    out = tmp_path / "device"
    write_device_bundle(full_bundle, out)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (300, 500), dtype=np.uint8),
              np.full((224, 224), 230, np.uint8)]
    full = edge.load(full_bundle, target=cpu_profile)
    slim = edge.load(out, target=cpu_profile)
    assert full.backend == slim.backend and slim.backend.endswith("int8")
    for image in images:
        a, b = full.classify(image), slim.classify(image)
        assert a.label == b.label
        assert [t.label for t in a.tiles] == [t.label for t in b.tiles]
        np.testing.assert_equal([(t.score, t.stage1_score) for t in a.tiles],
                                [(t.score, t.stage1_score) for t in b.tiles])


def test_missing_fp32_format_says_it_is_a_device_bundle(full_bundle, tmp_path):
    out = tmp_path / "device"
    write_device_bundle(full_bundle, out)
    with pytest.raises(BundleError, match="device bundle: the full bundle"):
        load_bundle(out).file("stage1", "onnx")


def test_a_bundle_without_int8_is_refused_naming_the_stage(tmp_path):
    fp32_only = make_bundle(tmp_path / "fp32", formats=("onnx",))
    with pytest.raises(DeviceBundleError, match=r"manifest.json: files.stage1 has no device "
                                                r"format \(has: onnx"):
        write_device_bundle(fp32_only, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_model_that_does_not_match_its_hash_is_refused_and_nothing_is_left(
        full_bundle, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in full_bundle.iterdir():
        if path.is_file():
            (broken / path.name).write_bytes(path.read_bytes())
    (broken / "stage2.int8.onnx").write_bytes(b"not the model")
    with pytest.raises(DeviceBundleError, match=r"stage2.int8.onnx: sha256 mismatch"):
        write_device_bundle(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_is_never_overwritten(full_bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DeviceBundleError, match="not an empty folder"):
        write_device_bundle(full_bundle, out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_device_manifest_leaves_its_input_alone(full_bundle):
    manifest = json.loads((full_bundle / "manifest.json").read_text())
    before = json.dumps(manifest, sort_keys=True)
    device_manifest(manifest)
    assert json.dumps(manifest, sort_keys=True) == before


def test_cli_writes_a_device_bundle_and_reports_errors(full_bundle, tmp_path, capsys):
    assert main(["device-bundle", str(full_bundle), str(tmp_path / "d")]) == 0
    assert "4 files" in capsys.readouterr().out
    assert main(["device-bundle", str(full_bundle), str(tmp_path / "d")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["device-bundle", str(tmp_path / "nothing"), str(tmp_path / "e")]) == 2
    assert "bundle folder does not exist" in capsys.readouterr().err


def test_workstation_commands_on_the_device_build_say_where_they_run(monkeypatch, capsys):
    monkeypatch.setattr("edge._flavour.FLAVOUR", "device")
    monkeypatch.setitem(_workstation.COMMANDS, "train",
                        _workstation.Command("training_absent_here", "add", "run", "train"))
    assert main(["train", "--data", "x"]) == 2
    err = capsys.readouterr().err
    assert "not part of the device build" in err and "full build" in err
