"""The diffusion engine on a tiny model: training, resuming, sampling, the manifest, the
model-folder checks and the CLI (each test a few seconds on a CPU)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the diffusion engine needs torch")
pytest.importorskip("diffusers", reason="the diffusion engine needs diffusers")

from edge.cli import main as semedge  # noqa: E402
from synth import write_dataset as write_procedural  # noqa: E402
from synth.diffusion import LABELS, Architecture  # noqa: E402
from synth.diffusion.sample import sample  # noqa: E402
from synth.diffusion.store import ModelFolderError, file_sha256, load_model  # noqa: E402
from synth.diffusion.train import Settings, train  # noqa: E402
from synth.diffusion.writer import write_dataset  # noqa: E402

TINY = Architecture(resolution=16, block_out_channels=(8, 16), layers_per_block=1)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_procedural(root, per_class=2, seed=0, size=64)
    shutil.rmtree(root / "crack")  # a label without images: the model cannot draw it
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny"
    res = train(data, out, minutes=1.0, seed=0, settings=Settings(batch=4), max_steps=3,
                arch=TINY, progress=False, log=lambda _: None)
    assert (res.steps_trained, res.resumed, res.interrupted) == (3, False, False)
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these tiny models gain nothing from more, on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_model_folder_records_what_it_was_trained_on(model: Path, data: Path) -> None:
    config = json.loads((model / "config.json").read_text())
    assert config["format"] == "semedge-diffusion/1" and config["steps_trained"] == 3
    assert config["labels"] == list(LABELS) and config["null_class"] == 8
    assert config["architecture"]["resolution"] == 16
    assert config["weights"]["sha256"] == file_sha256(model / "model.safetensors")
    assert config["data"]["images"] == 14 and config["data"]["per_label"]["crack"] == 0
    assert config["data"]["path"] == str(data.resolve())
    assert len(config["data"]["sha256"]) == 64
    assert config["data"]["synth_recipe"]["recipe"] == "default"
    state = torch.load(model / "train_state.pt", weights_only=True)
    assert state["step"] == 3


def test_training_resumes_from_the_folder(model: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    shutil.copytree(model, out)
    res = train(data, out, minutes=1.0, seed=0, settings=Settings(batch=4), max_steps=2,
                progress=False, log=lambda _: None)
    assert (res.steps_trained, res.steps_this_run, res.resumed) == (5, 2, True)
    runs = json.loads((out / "config.json").read_text())["training"]["runs"]
    assert [(r["start_step"], r["end_step"]) for r in runs] == [(0, 3), (3, 5)]
    other = tmp_path / "other"
    write_procedural(other, per_class=1, seed=9, size=64)
    with pytest.raises(ValueError, match="not the data the model"):
        train(other, out, minutes=1.0, max_steps=1, progress=False)


def test_resuming_checks_the_training_state(model: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    shutil.copytree(model, out)
    (out / "train_state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFolderError, match="train_state.pt"):
        train(data, out, minutes=1.0, max_steps=1, progress=False)
    (out / "config.json").unlink()
    with pytest.raises(ModelFolderError, match="incomplete"):
        train(data, out, minutes=1.0, max_steps=1, progress=False)


def test_sampling_is_deterministic_for_a_seed(model: Path) -> None:
    net, config = load_model(model)
    arch = config["architecture"]
    a = sample(net, arch, [0, 3, 7], [11, 12, 13], steps=3, guidance=2.0)
    b = sample(net, arch, [0, 3, 7], [11, 12, 13], steps=3, guidance=2.0)
    c = sample(net, arch, [0, 3, 7], [11, 12, 99], steps=3, guidance=2.0)
    assert a.shape == (3, 16, 16) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:2], c[:2])  # an image depends on its own seed only
    assert not np.array_equal(a[2], c[2])
    d = sample(net, arch, [0], [11], steps=3, guidance=1.0, sampler="ddim")
    assert d.shape == (1, 16, 16)


def test_written_dataset_layout_and_manifest(model: Path, tmp_path: Path) -> None:
    kw = dict(steps=2, guidance=1.5, size=32, batch=5, sheet=True)
    res = write_dataset(model, tmp_path / "a", per_class=2, seed=4, **kw)
    write_dataset(model, tmp_path / "b", per_class=2, seed=4, **kw)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")  # byte-identical for a seed
    assert res.skipped == ("crack",) and len(res.labels) == 7 and res.images == 14
    sha = json.loads((model / "config.json").read_text())["weights"]["sha256"]
    lines = [json.loads(x) for x in res.manifest.read_text().splitlines()]
    assert [(r["label"], r["index"]) for r in lines] == [
        (lab, i) for lab in LABELS if lab != "crack" for i in range(2)]
    for rec in lines:
        img = cv2.imread(str(tmp_path / "a" / rec["path"]), cv2.IMREAD_UNCHANGED)
        assert img.shape == (32, 32) and img.dtype == np.uint8
        assert rec["path"] == f"{rec['label']}/{rec['label']}_{rec['index']}.png"
        assert rec["class_index"] == LABELS.index(rec["label"])
        assert (rec["engine"], rec["model_sha256"], rec["recipe_hash"]) == (
            "diffusion", sha, sha)
        assert (rec["steps"], rec["guidance"], rec["sampler"], rec["resolution"]) == (
            2, 1.5, "ddim", 16)
        assert (rec["seed"], rec["size"], rec["bit_depth"]) == (4, 32, 8)
        assert rec["box"] is rec["mask_rle"] is rec["visibility"] is None
        assert len(rec["sha256"]) == 64 and isinstance(rec["image_seed"], int)
    assert not (tmp_path / "a" / "crack").exists()
    sheet = cv2.imread(str(tmp_path / "a" / "sheet.png"), cv2.IMREAD_GRAYSCALE)
    assert sheet.shape[0] == 112 * 7


def _break(folder: Path, how: str) -> str:
    """Damage a model folder; the file name the error must give."""
    config = folder / "config.json"
    data = json.loads(config.read_text())
    if how == "deleted weights":
        (folder / "model.safetensors").unlink()
        return "model.safetensors"
    if how == "tampered hash":
        data["weights"]["sha256"] = "0" * 64
    elif how == "changed weights":
        with open(folder / "model.safetensors", "r+b") as fh:
            fh.seek(-4, 2)
            fh.write(b"\x00\x01\x02\x03")
        return "model.safetensors"
    elif how == "wrong format":
        data["format"] = "something-else/9"
    elif how == "wrong labels":
        data["labels"] = data["labels"][:-1]
    elif how == "wrong architecture":
        data["architecture"]["block_out_channels"] = [16, 32]
    elif how == "deleted config":
        config.unlink()
        return "config.json"
    config.write_text(json.dumps(data))
    return "model.safetensors" if how == "wrong architecture" else "config.json"


@pytest.mark.parametrize("how", ["deleted weights", "tampered hash", "changed weights",
                                 "wrong format", "wrong labels", "wrong architecture",
                                 "deleted config"])
def test_a_damaged_model_folder_is_refused(model: Path, tmp_path: Path, how: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "model"
    shutil.copytree(model, bad)
    name = _break(bad, how)
    with pytest.raises(ModelFolderError, match=name):
        load_model(bad)
    out = tmp_path / "out"
    code = semedge(["synth", "--engine", "diffusion", "--model", str(bad), "--out", str(out),
                    "--per-class", "1", "--seed", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and name in err and "error" in err
    assert not out.exists()  # refused before anything is written


def test_cli_trains_resumes_and_samples(data: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m"
    args = ["synth-train", "--engine", "diffusion", "--data", str(data), "--out", str(model),
            "--minutes", "1", "--seed", "1", "--batch", "2", "--max-steps", "1",
            "--resolution", "16", "--channels", "8,16", "--no-progress"]
    assert semedge(args) == 0
    assert json.loads((model / "config.json").read_text())["steps_trained"] == 1
    assert semedge(args[:-5] + ["--no-progress"]) == 0  # the folder's architecture
    assert "resumed" in capsys.readouterr().out
    assert semedge([*args[:-5], "--channels", "8,24", "--no-progress"]) == 2
    assert "another architecture" in capsys.readouterr().err
    code = semedge(["synth", "--engine", "diffusion", "--model", str(model), "--out",
                    str(tmp_path / "o"), "--per-class", "1", "--seed", "2", "--steps", "1",
                    "--guidance", "1", "--size", "64", "--no-progress"])
    assert code == 0 and "images/s" in capsys.readouterr().out
    rec = json.loads((tmp_path / "o" / "manifest.jsonl").read_text().splitlines()[0])
    assert (rec["engine"], rec["steps"], rec["guidance"], rec["size"]) == (
        "diffusion", 1, 1.0, 64)
    config = json.loads((model / "config.json").read_text())
    assert config["steps_trained"] == 2 and config["architecture"]["resolution"] == 16


@pytest.mark.parametrize("argv, words", [
    (["--steps", "4"], "only apply to --engine diffusion"),
    (["--engine", "diffusion"], "needs --model"),
    (["--engine", "diffusion", "--model", "m", "--workers", "2"], "--workers"),
])
def test_cli_refuses_options_of_the_other_engine(tmp_path: Path, argv: list[str], words: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = semedge(["synth", "--out", str(tmp_path / "o"), "--per-class", "1", "--seed", "0",
                    *argv])
    assert code == 2 and words in capsys.readouterr().err


def test_import_edge_does_not_import_torch_or_diffusers() -> None:
    code = ("import edge, edge.cli, sys; "
            "assert 'diffusers' not in sys.modules and 'torch' not in sys.modules, "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers'))")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
