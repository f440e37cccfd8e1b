"""Data-parallel training under torchrun: two CPU ranks (gloo) train a tiny recipe; rank 0
writes a bundle the edge runtime loads and runs; the manifest records the world size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from conftest import TINY_RECIPE  # noqa: E402

import edge  # noqa: E402
from edge.bundle import load_bundle  # noqa: E402
from edge.preprocess import read_image  # noqa: E402
from training.distributed import local_batch  # noqa: E402

# the tiny recipe without the monolithic model (top-level keys come before the tables)
RECIPE = "train_monolithic = false\n" + TINY_RECIPE.split("[monolithic]")[0]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, tiny_folder, tiny_eval_folder):
    root = tmp_path_factory.mktemp("ddp")
    (root / "tiny.toml").write_text(RECIPE, encoding="utf-8")
    out = root / "bundle"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", "2", "-m", "training", "--data", str(tiny_folder),
           "--out", str(out), "--recipe", str(root / "tiny.toml"),
           "--eval", f"heldout={tiny_eval_folder}", "--threads", "1", "--device", "cpu",
           "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    return proc, out


def test_two_ranks_exit_0_and_write_one_bundle(ddp_run):
    proc, out = ddp_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    prov = manifest["provenance"]
    assert (prov["world_size"], prov["device"], prov["distributed_backend"]) == (2, "cpu", "gloo")
    assert set(manifest["files"]) == {"stage1", "stage2"}


def test_the_bundle_loads_and_classifies(ddp_run, tiny_eval_folder):
    _, out = ddp_run
    bundle = load_bundle(out)
    cascade = edge.load(bundle)
    result = cascade.classify(read_image(tiny_eval_folder / "open" / "open_0.png"))
    assert result.label in {*manifest_classes(out), "normal", "unknown"}
    assert 0.0 <= result.score <= 1.0


WORKER = """
import hashlib, json, sys
import numpy as np, torch
import training.augment as augment
from training.models import build_model
from training.train_loop import FitConfig, fit, set_determinism

set_determinism(0, 1)
seen = []
original = augment.augment_batch_with_masks

def spy(xb, gen, cfg, mb=None):
    seen.append([int(round(float(v) * 64)) for v in xb[:, 0, 0, 0]])  # tile i holds i / 64
    return original(xb, gen, cfg, mb)

augment.augment_batch_with_masks = spy
n = 100
x = np.repeat(np.arange(n, dtype=np.float16)[:, None, None, None] / 64, 64 * 64,
              axis=3).reshape(n, 1, 64, 64)
model = build_model("stage2")
fit(model, x, np.arange(n) % 6, np.ones(n), binary=False,
    config=FitConfig(epochs=2, samples_per_epoch=64, batch_size=16, seed=5))
# parameters only: BatchNorm running statistics are per rank (rank 0's are saved)
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters()))
rank = torch.distributed.get_rank()
with open(sys.argv[1] + f"/rank{rank}.json", "w") as fh:
    json.dump({"batches": seen, "weights": digest.hexdigest()}, fh)
"""


def test_ranks_split_each_global_batch_and_end_with_the_same_weights(tmp_path):
    """``fit`` under torchrun: every global batch (drawn from the shared seed) is split
    between the ranks, disjoint and complete; DDP keeps the two models' weights identical."""
    (tmp_path / "worker.py").write_text(WORKER, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", str(tmp_path / "worker.py"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    gen = torch.Generator().manual_seed(5)
    expected = [torch.multinomial(torch.ones(100, dtype=torch.float64), 64, replacement=True,
                                  generator=gen).tolist() for _ in range(2)]
    batches = [b for epoch in expected for b in (epoch[i:i + 16] for i in range(0, 64, 16))]
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == len(batches) == 8
    for step, batch in enumerate(batches):
        assert ranks[0]["batches"][step] == batch[0::2]
        assert ranks[1]["batches"][step] == batch[1::2]


def manifest_classes(out) -> list[str]:
    return json.loads((out / "manifest.json").read_text())["classes"]


@pytest.mark.parametrize("batch, world", [(32, 2), (64, 3), (5, 4), (3, 1)])
def test_local_batches_are_disjoint_and_cover_the_global_batch(batch, world):
    idx = np.arange(100, 100 + batch)
    parts = [local_batch(idx, r, world) for r in range(world)]
    assert sorted(np.concatenate(parts).tolist()) == idx.tolist()
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
