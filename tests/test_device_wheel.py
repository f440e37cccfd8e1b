"""The device wheel (``SEMEDGE_WHEEL=device pip wheel .``): the runtime and the default
bundle's int8 models, under 6 MB installed, and it classifies the samples on its own.

The wheel is built from this checkout (~30 s: the Cython kernels are compiled) and
installed with ``pip install --target`` into a temporary folder. The check runs in a
subprocess that sees only that folder's ``edge``: the source tree and any editable
install of semedge are taken off the import path first.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVICE_INSTALLED_LIMIT = 6_000_000  # bytes on disk after install, .pyc included

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (ROOT / "edge" / "models" / "default" / "manifest.json").is_file(),
                       reason="default bundle not built (scripts/build-default-bundle)"),
]

# Run inside the subprocess: hide editable installs and the checkout, then import.
ISOLATE = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if "__editable__" not in getattr(f, "__module__", "")]
sys.path_hooks[:] = [h for h in sys.path_hooks
                     if "__editable__" not in getattr(h, "__module__", "")]
sys.path_importer_cache.clear()
sys.path[:] = [p for p in sys.path if p not in ("", ".", {root!r})]
"""


@pytest.fixture(scope="module")
def device_install(tmp_path_factory) -> Path:
    """The device wheel built from this checkout and installed into a folder."""
    work = tmp_path_factory.mktemp("device-wheel")
    isolation = ([] if importlib.util.find_spec("Cython") is None
                 else ["--no-build-isolation"])
    env = {**os.environ, "SEMEDGE_WHEEL": "device"}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q",
         "-w", str(work / "dist"), str(ROOT)],
        env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (work / "dist").glob("semedge-*.whl")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
         str(work / "site"), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    return work


def _run(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", ISOLATE.format(root=str(ROOT)) + code],
                          cwd=site.parent, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_wheel_holds_the_runtime_and_int8_models_only(device_install):
    (wheel,) = (device_install / "dist").glob("semedge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"edge", next(
        n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))}
    models = sorted(n for n in names if n.startswith("edge/models/"))
    assert models and all(n.endswith((".int8.onnx", ".tflite", "manifest.json"))
                          for n in models), models
    assert not [n for n in names if n.endswith((".pt", "splits.json", ".png"))
                and not n.startswith("edge/samples/")]
    manifest = json.loads(zipfile.ZipFile(wheel).read("edge/models/default/manifest.json"))
    assert "checkpoints" not in manifest and "splits" not in manifest


def test_installed_size_is_under_the_device_limit(device_install):
    site = device_install / "site"
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    assert size < DEVICE_INSTALLED_LIMIT, f"{size / 1e6:.2f} MB installed"


def test_the_device_install_classifies_the_samples_alone(device_install):
    code = """
import json, edge
from edge._flavour import FLAVOUR
from edge.files import samples_dir
cascade = edge.load(target="x86-cpu")
paths = sorted(p for p in samples_dir().iterdir() if p.suffix == ".png")
labels = {p.name: cascade.classify_file(p).label for p in paths}
try:
    import training
    has_training = True
except ImportError:
    has_training = False
print(json.dumps({"file": edge.__file__, "flavour": FLAVOUR, "labels": labels,
                  "backend": cascade.backend, "training": has_training}))
"""
    done = _run(device_install / "site", code)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(device_install / "site"))
    assert out["flavour"] == "device" and out["training"] is False
    assert out["backend"].endswith("int8")
    assert len(out["labels"]) == 9


def test_training_on_the_device_build_names_the_full_build(device_install):
    done = _run(device_install / "site",
                "from edge.cli import main; raise SystemExit(main(['train', '--data', 'x']))")
    assert done.returncode == 2
    assert "not part of the device build" in done.stderr
