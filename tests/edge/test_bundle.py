"""Bundle verification: schema, classes, hashes, files and model shapes."""

from __future__ import annotations

import json

import pytest
from bundle_factory import make_bundle, read_manifest, sha256, write_manifest

import edge
from edge.bundle import BundleError, default_bundle_path, load_bundle
from edge.classes import CLASSES


def test_valid_bundle_loads_with_its_parameters(bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.input_size == 224 and (b.low, b.high) == (1.0, 99.0)
    assert b.stage1_threshold == 0.5 and b.temperature == 1.0
    assert b.formats("stage1") == ("onnx",) and b.formats("monolithic") == ()
    assert b.file("stage2", "onnx").path.name == "stage2.onnx"


def test_tampered_file_is_refused_naming_the_file(fresh_bundle):
    with open(fresh_bundle / "stage2.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match=r"stage2\.onnx.*sha256 mismatch") as info:
        edge.load(fresh_bundle, target="x86-cpu")
    assert info.value.file.endswith("stage2.onnx")


def test_missing_file_is_refused_naming_the_file(fresh_bundle):
    (fresh_bundle / "stage1.onnx").unlink()
    with pytest.raises(BundleError, match=r"stage1\.onnx: missing"):
        load_bundle(fresh_bundle)


def test_wrong_class_list_is_refused(fresh_bundle):
    m = read_manifest(fresh_bundle)
    m["classes"] = list(reversed(CLASSES))
    write_manifest(fresh_bundle, m)
    with pytest.raises(BundleError, match=r"manifest\.json: class list .* docs/classes\.md order"):
        load_bundle(fresh_bundle)


def test_wrong_input_shape_is_refused_naming_the_model(tmp_path, cpu_profile):
    root = make_bundle(tmp_path / "b", size=224, model_size=112)
    load_bundle(root)  # hashes and schema are fine; the model itself is not
    with pytest.raises(BundleError, match=r"stage1\.onnx: model input shape \['N', 1, 112, 112\]"):
        edge.load(root, target=cpu_profile)


def test_model_with_wrong_output_width_is_refused(fresh_bundle, cpu_profile):
    m = read_manifest(fresh_bundle)
    m["files"]["stage1"]["onnx"] = dict(m["files"]["stage2"]["onnx"])  # 6 outputs, not 1
    write_manifest(fresh_bundle, m)
    with pytest.raises(BundleError, match=r"stage2\.onnx: model output shape .* stage1"):
        edge.load(fresh_bundle, target=cpu_profile)


def test_missing_manifest_and_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match=r"manifest\.json: missing"):
        load_bundle(tmp_path)


def test_invalid_json_is_refused(fresh_bundle):
    (fresh_bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(fresh_bundle)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(format_version=2), "format_version 2 is not supported"),
    (lambda m: m["stage1"].pop("threshold"), "missing key stage1.threshold"),
    (lambda m: m["stage1"].update(threshold=1.5), r"stage1.threshold must be in \[0.0, 1.0\]"),
    (lambda m: m["stage1"].update(threshold=True), "stage1.threshold must be int/float"),
    (lambda m: m["stage2"].update(temperature=0), "stage2.temperature must be a finite number > 0"),
    (lambda m: m["stage2"].update(other_output="yes"), "stage2.other_output must be true or false"),
    (lambda m: m["input"].update(size="224"), "input.size must be int"),
    (lambda m: m["input"].update(channels=3), "input.channels must be 1"),
    (lambda m: m["preprocess"].update(low=99.0, high=1.0), "low .* must be below"),
    (lambda m: m["files"].pop("stage2"), "files.stage2 is required"),
    (lambda m: m["files"]["stage1"]["onnx"].update(format="onnx-int8"), "expected 'onnx-fp32'"),
    (lambda m: m["files"]["stage1"].update(tflite={}), "unknown format key files.stage1.tflite"),
    (lambda m: m["files"].update(stage3={}), "unknown stage files.stage3"),
    (lambda m: m["files"]["stage1"]["onnx"].update(sha256="abc"), "not a hex sha256"),
    (lambda m: m.pop("metrics"), "missing key metrics"),
])
def test_schema_violations_are_refused(fresh_bundle, edit, message):
    m = read_manifest(fresh_bundle)
    edit(m)
    write_manifest(fresh_bundle, m)
    with pytest.raises(BundleError, match=message) as info:
        load_bundle(fresh_bundle)
    assert info.value.file.endswith("manifest.json")


def test_file_path_may_not_leave_the_bundle(fresh_bundle, tmp_path):
    outside = tmp_path / "evil.onnx"
    outside.write_bytes((fresh_bundle / "stage1.onnx").read_bytes())
    m = read_manifest(fresh_bundle)
    m["files"]["stage1"]["onnx"].update(path="../evil.onnx", sha256=sha256(outside))
    write_manifest(fresh_bundle, m)
    with pytest.raises(BundleError, match="must stay inside the bundle"):
        load_bundle(fresh_bundle)


def test_bundle_without_the_targets_format_is_refused(bundle_dir, without_tflite):
    # rpi5 runs tflite-int8, or (its explicit fallback) onnx-int8; this bundle has onnx only
    with pytest.raises(BundleError, match=r"target 'rpi5' runs onnxruntime formats \['onnx-int8'\]"):
        edge.load(bundle_dir, target="rpi5")


@pytest.mark.skipif((default_bundle_path() / "manifest.json").exists(),
                    reason="a default bundle is installed")
def test_missing_default_bundle_gives_a_clear_error():
    with pytest.raises(BundleError, match="default bundle is not installed"):
        edge.load()


def test_manifest_is_plain_json_the_factory_wrote(bundle_dir):
    m = json.loads((bundle_dir / "manifest.json").read_text())
    assert m["classes"] == list(CLASSES)


def test_pi_profile_falls_back_when_the_bundle_has_no_tflite_files(tmp_path):
    """With a TFLite runtime installed, rpi4 must use its declared onnx-int8 fallback for a
    bundle without TFLite files, and say so (never fail, never fall back silently)."""
    pytest.importorskip("ai_edge_litert")
    bundle = make_bundle(tmp_path / "b", formats=("onnx", "onnx-int8"))
    cascade = edge.load(bundle, target="rpi4")
    assert cascade.backend.startswith("onnxruntime") and cascade.backend.endswith("int8")
    assert "the bundle has no tflite-int8; using the profile's fallback" in cascade.target_reason
