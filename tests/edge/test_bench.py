"""``semedge bench`` end to end in quick mode on a test bundle, its JSON schema, the
explanatory rows of formats that cannot run, the scoring and cost helpers."""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bundle_factory import make_bundle, read_manifest, write_manifest

from edge.bench import evalset as evalset_mod
from edge.bench.cascade_cost import bright_field, field_costs, flag_rate, open_monolithic
from edge.bench.evalset import EvalSet, EvalSetUnavailable
from edge.bench.formats import cascade_labels, format_profile, measure_formats, score
from edge.bench.machine import cpu_model, describe_machine
from edge.bench.report import validate
from edge.bench.runner import BenchConfig, default_threads, run_bench
from edge.bundle import load_bundle
from edge.cli import main

QUICK = ["--quick", "--target", "x86-cpu", "--threads", "1", "--field", "448",
         "--eval-per-class", "2"]


@pytest.fixture(scope="module")
def bench_bundle(tmp_path_factory) -> Path:
    """fp32 + int8 + monolithic, tiny models (fast)."""
    return make_bundle(tmp_path_factory.mktemp("bench"), formats=("onnx", "onnx-int8"),
                       monolithic=True)


@pytest.fixture(scope="module")
def quick_run(bench_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    json_path, plots = out / "bench.json", out / "plots"
    status = main(["bench", "--bundle", str(bench_bundle), *QUICK,
                   "--formats", "onnx,onnx-int8,tflite-int8",
                   "--defect-rate", "0.02,0.5", "--json", str(json_path),
                   "--plots", str(plots)])
    return status, json.loads(json_path.read_text()), plots


# ------------------------------------------------------------------ end to end


def test_quick_bench_runs_end_to_end(quick_run):
    status, doc, _ = quick_run
    assert status == 0
    assert doc["config"]["quick"] is True


def test_json_matches_its_schema(quick_run):
    _, doc, _ = quick_run
    assert validate(doc) == []


def test_json_has_the_issue_columns(quick_run):
    _, doc, _ = quick_run
    rows = {r["format"]: r for r in doc["formats"]}
    assert list(rows) == ["onnx", "onnx-int8", "tflite-int8"]
    for fmt in ("onnx", "onnx-int8"):
        row = rows[fmt]
        assert row["reason"] is None
        for key in ("size_bytes", "stage1_recall", "stage2_macro_f1", "latency_ms_p50",
                    "latency_ms_p95"):
            assert row[key] is not None, (fmt, key)
        assert row["latency_ms_p50"] <= row["latency_ms_p95"] <= row["latency_ms_p99"]
        assert row["peak_rss_bytes"] >= row["baseline_rss_bytes"] > 0
        assert row["load_ms"] > 0 and row["first_call_ms"] > 0
    assert rows["onnx"]["stage2_agreement"] == 1.0  # fp32 against itself
    assert [r["defect_rate"] for r in doc["cascade"]] == [0.02, 0.5]
    for row in doc["cascade"]:
        for key in ("cascade_ms_per_field", "monolithic_ms_per_field", "speedup"):
            assert row[key] > 0
        assert row["tiles"] == 4  # 448² field, 224 tiles
        assert row["speedup"] == pytest.approx(
            row["monolithic_ms_per_field"] / row["cascade_ms_per_field"])
        assert 0 <= row["flag_rate"] <= 1
    assert doc["cascade"][0]["stage2_tiles"] == 0 and doc["cascade"][1]["stage2_tiles"] == 2
    assert doc["machine"]["cpu"] and doc["machine"]["libraries"]["numpy"] == np.__version__
    assert [r["threads"] for r in doc["threads"]] == [1]
    assert {p["dtype"] for p in doc["preprocess"]} == {"uint8", "uint16"}


def test_a_missing_format_gets_its_explanatory_row(quick_run):
    _, doc, _ = quick_run
    row = next(r for r in doc["formats"] if r["format"] == "tflite-int8")
    assert "tflite-int8" in row["reason"]
    assert row["size_bytes"] is None


def test_plots_are_written(quick_run):
    _, _, plots = quick_run
    names = {p.name for p in plots.iterdir()}
    assert {"latency.png", "cost.png", "confusion-onnx.png",
            "confusion-monolithic.png"} <= names


def test_json_to_stdout_and_tables_to_stderr(bench_bundle, capsys):
    status = main(["bench", "--bundle", str(bench_bundle), *QUICK, "--formats", "onnx",
                   "--defect-rate", "0.5", "--json", "-"])
    out, err = capsys.readouterr()
    assert status == 0
    assert validate(json.loads(out)) == []
    assert "Formats" in err and "Cascade vs monolithic" in err


def test_missing_default_bundle_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("edge.bundle.default_bundle_path", lambda: tmp_path / "nothing")
    assert main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "no default bundle" in err and "--bundle DIR" in err


@pytest.mark.parametrize("args", [["--formats", "onnx,fp16"], ["--threads", "0"],
                                  ["--defect-rate", "1.5"], ["--field", "-3"]])
def test_bad_options_are_usage_errors(args):
    with pytest.raises(SystemExit) as exc:
        main(["bench", *args])
    assert exc.value.code == 2


def test_plots_without_matplotlib_error_clearly(bench_bundle, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_matplotlib(name, *a, **k):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["bench", "--bundle", str(bench_bundle), *QUICK, "--plots", "x"]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err


def test_without_synth_the_accuracy_columns_say_why(bench_bundle, monkeypatch):
    def unavailable(**_):
        raise EvalSetUnavailable("the synth generator is not installed (test)")

    monkeypatch.setattr("edge.bench.runner.make_evalset", unavailable)
    result = run_bench(BenchConfig(bundle=bench_bundle, target="x86-cpu", quick=True,
                                   formats=("onnx",), threads=(1,), field=224,
                                   defect_rates=(0.5,)))
    doc = result.as_dict()
    assert validate(doc) == []
    row = doc["formats"][0]
    assert row["stage1_recall"] is None and "synth" in row["accuracy_reason"]
    assert row["latency_ms_p50"] > 0
    assert "synth" in doc["evaluation"]["reason"]
    assert doc["cascade"][0]["flag_rate"] is None
    assert "synth" in doc["cascade_info"]["accuracy"]["reason"]


def test_a_bundle_without_monolithic_still_benches_the_cascade(tmp_path):
    bundle = make_bundle(tmp_path / "b")  # onnx only, no monolithic
    result = run_bench(BenchConfig(bundle=bundle, target="x86-cpu", quick=True,
                                   formats=("onnx",), threads=(1,), field=224,
                                   defect_rates=(0.0,), per_class=1))
    doc = result.as_dict()
    assert validate(doc) == []
    assert doc["cascade"][0]["monolithic_ms_per_field"] is None
    assert doc["cascade"][0]["speedup"] is None
    assert "monolithic" in doc["cascade_info"]["monolithic_reason"]


def test_importing_edge_bench_does_not_import_synth():
    code = ("import sys, edge.cli, edge.bench.runner, edge.bench.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('synth', 'training', 'torch', 'matplotlib')]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_synth_the_evalset_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "synth", None)  # import synth → ImportError
    with pytest.raises(EvalSetUnavailable, match=r"synth generator is not installed.*"
                                                 r"pip install 'semedge\[train\]'"):
        evalset_mod.make_evalset(size=224, per_class=1)


# ------------------------------------------------------------------ formats rows


def test_a_format_whose_backend_is_missing_gets_a_reason(tmp_path, cpu_profile, monkeypatch):
    bundle = load_bundle(make_bundle(tmp_path / "b"))
    monkeypatch.setattr("edge.profiles.backends.why_unavailable",
                        lambda name, **_: f"backend {name!r} is not installed (test)")
    rows = measure_formats(bundle, cpu_profile, ["onnx"], threads=1, evalset=None)
    assert rows[0].reason == "backend 'onnxruntime' is not installed (test)"
    assert rows[0].as_row()["size_bytes"] > 0  # the file is there; the runtime is not


def test_a_format_that_fails_to_load_gets_a_reason_not_a_crash(tmp_path, cpu_profile):
    root = make_bundle(tmp_path / "b")
    (root / "stage2.onnx").write_bytes(b"not a model")
    manifest = read_manifest(root)
    from bundle_factory import sha256

    manifest["files"]["stage2"]["onnx"]["sha256"] = sha256(root / "stage2.onnx")
    write_manifest(root, manifest)
    rows = measure_formats(load_bundle(root), cpu_profile, ["onnx"], threads=1, evalset=None)
    assert "stage2.onnx" in rows[0].reason


def test_format_profile_prefers_the_targets_runtime(cpu_profile):
    forced, why = format_profile(cpu_profile, "onnx", threads=3)
    assert forced.runtime.formats == ("onnx",) and forced.fallback is None
    assert forced.runtime.providers == cpu_profile.runtime.providers
    assert forced.threads == 3 and why is None
    tfl, _ = format_profile(cpu_profile, "tflite-int8", threads=1)
    assert tfl.runtime.backend == "tflite"
    with pytest.raises(ValueError, match="unknown format"):
        format_profile(cpu_profile, "fp16", threads=1)


# ------------------------------------------------------------------ scoring


def _evalset(labels) -> EvalSet:
    labels = np.asarray(labels, np.int64)
    return EvalSet(batch=np.zeros((len(labels), 1, 4, 4), np.float32), labels=labels,
                   source={})


def test_cascade_labels_follow_the_runtime_rules():
    s1 = np.array([0.1, 0.9, 0.9])
    probs = np.array([[0.9, 0.1, 0, 0, 0, 0], [0.1, 0.8, 0.1, 0, 0, 0],
                      [0.4, 0.3, 0.3, 0, 0, 0]])
    np.testing.assert_array_equal(cascade_labels(s1, probs, 0.5, 0.5), [0, 2, 7])


def test_score_by_hand():
    ev = _evalset([0, 0, 1, 2])
    s1 = np.array([0.1, 0.8, 0.9, 0.9])  # one false positive, both defects flagged
    probs = np.zeros((4, 6))
    probs[:, 0] = 1.0  # stage 2 always says "ler"
    out = score(ev, s1, probs, threshold=0.5, unknown_threshold=0.5,
                reference=(s1, probs))
    assert out["stage1_recall"] == 1.0
    assert out["stage1_precision"] == pytest.approx(2 / 3)
    assert out["stage1_specificity"] == pytest.approx(0.5)
    # stage 2 on the defects: ler right, open wrong → F1 ler 2/3, open 0
    assert out["stage2_macro_f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert out["stage2_agreement"] == 1.0 and out["cascade_agreement"] == 1.0
    cm = np.array(out["confusion"]["matrix"])
    assert cm.shape == (7, 8) and cm.sum() == 4
    assert cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 1 and cm[2, 1] == 1


def test_agreement_counts_disagreements():
    ev = _evalset([1, 2])
    s1 = np.array([0.9, 0.9])
    probs = np.eye(6)[[0, 1]]
    ref_probs = np.eye(6)[[0, 2]]
    out = score(ev, s1, probs, threshold=0.5, unknown_threshold=0.5,
                reference=(s1, ref_probs))
    assert out["stage2_agreement"] == 0.5 and out["stage1_agreement"] == 1.0


# ------------------------------------------------------------------ cost helpers


def test_flag_rate_mixes_recall_and_false_positives():
    assert flag_rate(1.0, 1.0, 0.02) == pytest.approx(0.02)
    assert flag_rate(0.9, 0.95, 0.1) == pytest.approx(0.1 * 0.9 + 0.9 * 0.05)
    with pytest.raises(ValueError):
        flag_rate(1.0, 1.0, 1.5)


def test_field_costs_time_stage2_on_round_rate_times_tiles(bundle_dir, cpu_profile, tmp_path):
    import edge

    mono_bundle = make_bundle(tmp_path / "m", monolithic=True)
    cascade = edge.load(mono_bundle, target=cpu_profile)
    rows = field_costs(cascade, open_monolithic(cascade), bright_field(672, 224),
                       [0.0, 0.34, 1.0], flag_rates=[0.1, None, 1.0], min_time_s=0.0,
                       min_rounds=2, max_rounds=2)
    assert [r.tiles for r in rows] == [9, 9, 9]
    assert [r.stage2_tiles for r in rows] == [0, 3, 9]
    assert rows[0].stage2_tiles_at_flag_rate == 1 and rows[1].cascade_at_flag_rate is None
    for r in rows:
        assert r.cascade.repetitions == 2
        expected = np.add(np.add(r.tile.samples_ms, r.stage1.samples_ms), r.stage2.samples_ms)
        np.testing.assert_allclose(r.cascade.samples_ms, expected)
    with pytest.raises(ValueError):
        field_costs(cascade, None, bright_field(224, 224), [2.0])


# ------------------------------------------------------------------ machine, config


def test_cpu_model_reads_x86_and_arm_cpuinfo():
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 9R14\n") == "AMD EPYC 9R14"
    arm = "processor\t: 0\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\nModel\t: Raspberry Pi 5\n"
    assert cpu_model(arm) == "BCM2835"


def test_describe_machine_lists_cores_and_versions():
    m = describe_machine()
    assert m["usable_cpus"] >= 1 and m["python"] and "numpy" in m["libraries"]
    json.dumps(m)


def test_default_threads_are_powers_of_two_up_to_the_cpus():
    assert default_threads(1) == (1,)
    assert default_threads(2) == (1, 2)
    assert default_threads(4) == (1, 2, 4)
    assert default_threads(6) == (1, 2, 4, 6)


@pytest.mark.parametrize("bad", [{"formats": ("fp16",)}, {"threads": (0,)},
                                 {"defect_rates": (1.2,)}, {"defect_rates": ()},
                                 {"field": 0}, {"per_class": 0}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        BenchConfig(**bad)


def test_validate_reports_missing_and_mistyped_keys(quick_run):
    _, doc, _ = quick_run
    broken = json.loads(json.dumps(doc))
    del broken["formats"][0]["latency_ms_p50"]
    broken["cascade"][0]["speedup"] = "fast"
    problems = validate(broken)
    assert any("latency_ms_p50" in p for p in problems)
    assert any("speedup" in p for p in problems)
    assert validate({"schema": 1}) != []


def test_evalset_is_deterministic_and_labelled():
    pytest.importorskip("synth")
    a = evalset_mod.make_evalset(size=224, per_class=1)
    b = evalset_mod.make_evalset(size=224, per_class=1)
    np.testing.assert_array_equal(a.batch, b.batch)
    assert list(a.labels) == list(range(7))
    assert a.batch.dtype == np.float32 and a.batch.shape == (7, 1, 224, 224)
    assert 0.0 <= a.batch.min() and a.batch.max() <= 1.0
