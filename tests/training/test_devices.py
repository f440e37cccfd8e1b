"""``semedge train --device auto|cpu|cuda``: resolution, the error without CUDA, and where
each step runs (CUDA simulated with monkeypatch; this machine has none)."""

from __future__ import annotations

import argparse

import pytest

torch = pytest.importorskip("torch")

from training.cli import add_train_arguments, run_train  # noqa: E402
from training.distributed import DeviceError, resolve_device, setup  # noqa: E402


def _train(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return run_train(parser.parse_args(argv))


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_cuda_without_cuda_is_one_line_exit_2_before_any_work(no_cuda, tmp_path, capsys):
    out = tmp_path / "bundle"
    rc = _train(["--data", str(tmp_path / "no-such-folder"), "--out", str(out),
                 "--device", "cuda"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("semedge train: --device cuda: CUDA is not "
                                                   "available")
    assert "--device cpu or auto" in err
    assert not out.exists()  # nothing scanned, nothing written (the data error comes later)


def test_an_unknown_device_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        _train(["--data", "d", "--out", "o", "--device", "tpu"])
    assert exc.value.code == 2 and "invalid choice: 'tpu'" in capsys.readouterr().err


def test_auto_picks_the_cpu_here(no_cuda):
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    assert setup("auto").device == "cpu"


def test_auto_and_cuda_pick_cuda_when_it_is_there(with_cuda):
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("cpu") == "cpu"


def test_cuda_error_names_the_reason(no_cuda, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(DeviceError, match="CPU-only build"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    with pytest.raises(DeviceError, match="no CUDA device is visible"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="one of auto, cpu, cuda"):
        resolve_device("gpu")


def test_the_device_reaches_fit_and_the_manifest(no_cuda, monkeypatch, tmp_path, tiny_folder):
    """The pipeline hands the resolved device to ``fit`` and records it; a stub ``fit``
    stops the run right there (the real run is in test_end_to_end.py and test_ddp.py)."""
    import training.train_loop as train_loop

    seen: list[str] = []

    class Stop(Exception):
        pass

    def fake_fit(*args, device: str = "?", **kwargs):
        seen.append(device)
        raise Stop

    monkeypatch.setattr(train_loop, "fit", fake_fit)
    from training.pipeline import _device_provenance, train_bundle

    with pytest.raises(Stop):
        train_bundle(tiny_folder, tmp_path / "out", device="auto", quiet=True)
    assert seen == ["cpu"]
    assert _device_provenance(setup("cpu")) == {
        "device": "cpu", "device_name": None, "world_size": 1, "distributed_backend": None}
