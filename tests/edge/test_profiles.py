"""Target profiles, auto-detection, backends and session options."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import edge
from edge import backends
from edge.backends import BackendUnavailable, ProviderError
from edge.backends.onnxruntime_backend import OnnxRuntimeBackend, resolve_providers
from edge.cascade import load
from edge.profiles import detect, list_profiles, load_profile, profile_dirs

NAMES = {"x86-cpu", "rpi4", "rpi5", "coral-usb", "coral-devboard", "jetson-orin"}
REPO = Path(__file__).resolve().parents[2]


def test_all_six_profiles_ship_and_parse():
    profiles = {p.name: p for p in list_profiles()}
    assert set(profiles) == NAMES
    for name, p in profiles.items():
        assert p.source.stem == name
        assert p.batch > 0 and p.tile == 224 and p.runtime.formats
    assert {p.name for p in (REPO / "targets").glob("*.toml")} >= {f"{n}.toml" for n in NAMES}
    assert any(d == REPO / "targets" for d in profile_dirs())


def test_profile_preferences_follow_the_design():
    assert load_profile("x86-cpu").runtime.formats == ("onnx-int8", "onnx")
    for name in ("rpi4", "rpi5"):
        p = load_profile(name)
        assert p.runtime.formats == ("tflite-int8",)
        assert p.fallback.formats == ("onnx-int8",)  # explicit, in the profile
    jetson = load_profile("jetson-orin").runtime
    assert jetson.providers[:2] == ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown target 'pi9'; known targets: coral-devboard"):
        load_profile("pi9")


def test_profile_from_a_file_and_invalid_files(tmp_path):
    good = tmp_path / "mine.toml"
    good.write_text('backend = "onnxruntime"\nformats = ["onnx"]\nthreads = 1\n'
                    'stage1_threshold = 0.3\n')
    p = load_profile(good)
    assert (p.name, p.threads, p.stage1_threshold, p.stride) == ("mine", 1, 0.3, None)
    bad = tmp_path / "bad.toml"
    for text, message in [
        ('backend = "onnxruntime"\nformats = ["tflite-int8"]', "non-empty subset"),
        ('backend = "nope"\nformats = ["onnx"]', "unknown backend 'nope'"),
        ('backend = "onnxruntime"\nformats = ["onnx"]\nbatch = 0', "batch must be an integer > 0"),
        ('backend = "onnxruntime"\nformats = ["onnx"]\nstage1_threshold = 2', "stage1_threshold"),
        ("backend = [", "cannot read target profile"),
    ]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_profile(bad)


@pytest.mark.parametrize(("model", "expected"), [
    ("Raspberry Pi 5 Model B Rev 1.0", "rpi5"),
    ("Raspberry Pi 4 Model B Rev 1.4", "rpi4"),
])
def test_auto_picks_the_board_from_the_device_tree(model, expected):
    found = detect(model=model, machine="aarch64", usb_ids=set())
    assert found.profile.name == expected
    assert repr(model) in found.reason


def test_auto_skips_a_board_whose_runtime_is_missing_and_says_so():
    found = detect(model="NVIDIA Jetson Orin Nano Developer Kit", machine="aarch64",
                   usb_ids=set())
    assert found.profile.name == "x86-cpu"  # the generic CPU profile
    assert "skipped jetson-orin" in found.reason and "CUDAExecutionProvider" in found.reason


def test_auto_on_x86_and_with_a_coral_usb_stick(without_tflite):
    assert detect(model="", machine="x86_64", usb_ids=set()).profile.name == "x86-cpu"
    found = detect(model="", machine="x86_64", usb_ids={"18d1:9302"})
    assert found.profile.name == "x86-cpu" and "skipped coral-usb" in found.reason


def test_auto_load_says_what_it_chose(bundle_dir):
    cascade = edge.load(bundle_dir)  # target="auto"
    assert cascade.target_reason.startswith("target x86-cpu (auto: CPU architecture")


def test_missing_backend_names_what_to_install(bundle_dir, without_tflite):
    with pytest.raises(BackendUnavailable, match="pip install ai-edge-litert"):
        edge.load(bundle_dir, target="coral-usb")


def test_explicit_provider_that_is_missing_is_an_error(bundle_dir):
    with pytest.raises(ProviderError, match="'CUDAExecutionProvider' was requested"):
        load(bundle_dir, target="x86-cpu", providers=["CUDAExecutionProvider"])
    with pytest.raises(ProviderError, match="CUDAExecutionProvider"):
        edge.load(bundle_dir, target="jetson-orin")


def test_optional_providers_are_skipped_required_ones_are_not():
    have = ["CPUExecutionProvider"]
    assert resolve_providers(["OpenVINOExecutionProvider", "CPUExecutionProvider"],
                             ["OpenVINOExecutionProvider"], have) == ["CPUExecutionProvider"]
    with pytest.raises(ProviderError):
        resolve_providers(["OpenVINOExecutionProvider", "CPUExecutionProvider"], [], have)
    with pytest.raises(ProviderError, match="none of the providers"):
        resolve_providers(["X"], ["X"], have)


def test_session_options_for_small_boards():
    options = OnnxRuntimeBackend(threads=3).session_options()
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert str(options.execution_mode).endswith("ORT_SEQUENTIAL")
    assert str(options.graph_optimization_level).endswith("ORT_ENABLE_ALL")


def test_registry_is_open_for_new_backends(without_tflite):
    assert backends.available_backends() == ("onnxruntime",)
    assert "tflite" in backends.backend_names()
    spec = backends.BackendSpec("fake", "no.such.module", ("numpy",), ("onnx",), "pip install fake")
    backends.register(spec)
    try:
        assert "not implemented" in backends.why_unavailable("fake")
        with pytest.raises(ValueError, match="unknown backend"):
            backends.backend_spec("nope")
    finally:
        backends._REGISTRY.pop("fake")


def test_profile_overrides_threshold_and_tile_must_match(bundle_dir, cpu_profile):
    cascade = edge.load(bundle_dir, target=replace(cpu_profile, stage1_threshold=0.9))
    assert cascade.threshold == 0.9
    assert edge.load(bundle_dir, target=cpu_profile).threshold == 0.5  # the bundle's
    with pytest.raises(ValueError, match="tiles at 256 px but the bundle"):
        edge.load(bundle_dir, target=replace(cpu_profile, tile=256))


def test_cascade_reports_backend_and_threads(cascade):
    assert cascade.backend == "onnxruntime:CPUExecutionProvider:fp32"
    assert cascade.threads == 2 and cascade.stride == 224


def test_auto_skips_a_coral_stick_without_the_edgetpu_library():
    """With a TFLite runtime installed but no libedgetpu, auto must not pick coral-usb."""
    found = detect(model="", machine="x86_64", usb_ids={"18d1:9302"})
    assert found.profile.name == "x86-cpu" and "skipped coral-usb" in found.reason
