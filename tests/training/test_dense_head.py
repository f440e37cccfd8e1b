"""Stage 1's training-only dense head: cell targets from synth's masks, masks that
follow the augmentation, a head that trains and is never exported; concurrent fits."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from synth.compose import rle_encode  # noqa: E402
from training.augment import AugmentConfig, augment_batch, augment_batch_with_masks  # noqa: E402
from training.cell_masks import UNKNOWN, cell_targets, read_masks  # noqa: E402
from training.models import build_model, count_parameters  # noqa: E402

ONLY_SYMMETRIES = AugmentConfig(p_invert=0.0, p_resample=0.0, p_blur=0.0, p_gamma=0.0,
                                p_contrast=0.0, p_noise=0.0, renormalize=False)


def _mask(size: int, rows: slice, cols: slice) -> dict:
    m = np.zeros((size, size), bool)
    m[rows, cols] = True
    return rle_encode(m)


def test_cell_targets_mark_the_cells_the_mask_covers():
    masks = {"/d/crack/a.png": _mask(64, slice(0, 17), slice(40, 64)),  # (0,2),(0,3); 1 row of (1,*)
             "/d/void/tiny.png": _mask(64, slice(17, 19), slice(33, 35))}  # 4 px in (1,2)
    cells = cell_targets(["/d/crack/a.png", "/d/void/tiny.png"], np.array([6, 4]), masks,
                         size=64, grid=4, min_pixels=8)
    # (1,2) has 8 px of it (one row), (1,3) 16 px: both count; min_pixels=8
    assert cells[0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    # a defect smaller than min_pixels still marks the cell it is in
    assert np.argwhere(cells[1] == 1).tolist() == [[1, 2]]


def test_cell_targets_are_unknown_without_a_mask_and_zero_for_normals():
    masks = {"/d/open/big.png": _mask(128, slice(0, 8), slice(0, 8))}  # not a 64-px tile
    cells = cell_targets(["/d/normal/n.png", "/d/open/x.png", "/d/open/big.png"],
                         np.array([0, 2, 2]), masks, size=64, grid=4)
    assert (cells[0] == 0).all()
    assert (cells[1] == UNKNOWN).all() and (cells[2] == UNKNOWN).all()
    with pytest.raises(ValueError, match="does not divide"):
        cell_targets([], np.array([]), {}, size=64, grid=5)


def test_read_masks_keys_are_absolute_image_paths(tmp_path):
    import json

    rows = [{"path": "crack/c.png", "mask_rle": _mask(8, slice(0, 2), slice(0, 2))},
            {"path": "normal/n.png", "mask_rle": None}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    found = read_masks(tmp_path)
    assert list(found) == [str((tmp_path / "crack" / "c.png").resolve())]
    assert read_masks(tmp_path / "nowhere") == {}


def test_masks_follow_the_tile_under_every_symmetry():
    # tile k has a bright 16×16 block in cell (k % 4, k // 4); its mask marks that cell
    n, size, grid = 16, 64, 4
    x = torch.zeros(n, 1, size, size)
    m = torch.zeros(n, 1, grid, grid, dtype=torch.uint8)
    for k in range(n):
        r, c = k % 4, k // 4
        x[k, 0, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] = 1.0
        m[k, 0, r, c] = 1
    for seed in range(6):
        xa, ma = augment_batch_with_masks(x, torch.Generator().manual_seed(seed),
                                          ONLY_SYMMETRIES, m)
        bright = xa.reshape(n, grid, 16, grid, 16).mean(dim=(2, 4)) > 0.5
        assert torch.equal(bright, ma[:, 0].bool())


def test_masks_do_not_change_the_random_draws():
    x = torch.rand(16, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    m = torch.zeros(16, 1, 2, 2, dtype=torch.uint8)
    a = augment_batch(x, torch.Generator().manual_seed(3))
    b, _ = augment_batch_with_masks(x, torch.Generator().manual_seed(3), AugmentConfig(), m)
    assert torch.equal(a, b)


def _tiny_fit(model, *, dense, description="stage1", weight_decay=1e-4):
    from training.train_loop import FitConfig, fit

    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 64, 64, generator=g).numpy()
    labels = np.arange(32) % 2
    return fit(model, x, labels.astype(np.float32), np.ones(32), binary=True,
               config=FitConfig(epochs=1, samples_per_epoch=32, batch_size=16, seed=1,
                                weight_decay=weight_decay),
               dense_targets=dense, description=description)


def test_dense_head_trains_but_is_not_exported(tmp_path):
    from training.export.onnx import export_onnx

    model = build_model("stage1")
    assert model.dense is not None and model.dense.out_channels == 1
    dense = np.zeros((32, 2, 2), np.uint8)
    dense[1::2, 0, 0] = 1  # the "defective" tiles have their defect in one cell
    before = model.dense.weight.detach().clone()
    _tiny_fit(model, dense=dense)
    assert not torch.equal(model.dense.weight, before)
    shapes = [list(t.dims) for t in onnx.load(str(export_onnx(model, tmp_path / "s1.onnx",
                                                              size=64))).graph.initializer]
    assert [1, 64, 1, 1] not in shapes
    deployed = sum(p.numel() for n, p in model.named_parameters()
                   if not n.startswith(("aux.", "dense.")))
    assert count_parameters(model) == deployed


def test_unknown_cells_give_the_dense_head_no_gradient():
    model = build_model("stage1")
    before = model.dense.weight.detach().clone()
    # (no weight decay: AdamW would shrink the weights without any gradient)
    _tiny_fit(model, dense=np.full((32, 2, 2), UNKNOWN, np.uint8), weight_decay=0.0)
    assert torch.equal(model.dense.weight, before)


def test_dense_targets_of_another_grid_are_refused():
    with pytest.raises(ValueError, match="cells"):
        _tiny_fit(build_model("stage1"), dense=np.zeros((32, 3, 3), np.uint8))


def test_concurrent_fits_equal_sequential_ones_at_the_same_threads():
    from training.pipeline import _run_fits

    def jobs():
        torch.manual_seed(0)
        a, b = build_model("stage1"), build_model("stage1")
        return {"stage1": lambda: (_tiny_fit(a, dense=None), a)[1],
                "stage2": lambda: (_tiny_fit(b, dense=None, description="other"), b)[1]}

    torch.set_num_threads(1)
    seq = _run_fits(jobs(), concurrent=False, threads=1)
    par = _run_fits(jobs(), concurrent=True, threads=1)
    assert list(par) == ["stage1", "stage2"]
    for name in seq:
        for (k, v), w in zip(seq[name].state_dict().items(), par[name].state_dict().values()):
            assert torch.equal(v, w), (name, k)


def test_a_failing_stage1_thread_fails_the_run():
    from training.pipeline import _run_fits

    def boom():
        raise RuntimeError("stage 1 broke")

    with pytest.raises(RuntimeError, match="stage 1 broke"):
        _run_fits({"stage1": boom, "stage2": lambda: 2}, concurrent=True, threads=2)
    assert torch.get_num_threads() == 2



def test_crops_keep_the_defect_and_its_cells():
    from training.train_loop import crop_batch

    # tile 0: an 8×8 defect in cell (6, 5) of a 7×7 grid of 32-px cells; tile 1: normal,
    # each pixel holding its own position
    x = torch.zeros(2, 1, 224, 224)
    x[0, 0, 200:208, 170:178] = 1.0
    x[1, 0] = torch.arange(224.0 * 224).reshape(224, 224)
    cells = torch.zeros(2, 1, 7, 7, dtype=torch.uint8)
    cells[0, 0, 6, 5] = 1
    gen = torch.Generator().manual_seed(0)
    defect_cells, normal_origins = set(), set()
    for _ in range(80):
        xs, cs = crop_batch(x, cells, 128, gen)
        assert xs.shape == (2, 1, 128, 128) and cs.shape == (2, 1, 4, 4)
        assert float(xs[0].sum()) == 64.0 and int((cs[0] == 1).sum()) == 1
        defect_cells.add(tuple(torch.nonzero(cs[0, 0] == 1)[0].tolist()))
        assert bool((cs[1] == 0).all())
        normal_origins.add(divmod(int(xs[1, 0, 0, 0]), 224))
    # the windows that hold the defect: rows 3..6, columns 2..5 or 3..6
    assert defect_cells == {(3, 3), (3, 2)}
    # a normal tile gets every window on the cell grid
    assert normal_origins == {(32 * r, 32 * c) for r in range(4) for c in range(4)}
    cells[0] = UNKNOWN  # a defect somewhere: a window could cut it off
    with pytest.raises(ValueError, match="some are unknown"):
        crop_batch(x, cells, 128, gen)


def test_crop_must_be_whole_cells():
    from training.train_loop import crop_batch

    with pytest.raises(ValueError, match="multiple of the 32-px cell"):
        crop_batch(torch.zeros(1, 1, 224, 224), torch.zeros(1, 1, 7, 7, dtype=torch.uint8),
                   100, torch.Generator())


def test_crop_training_runs_the_first_share_of_steps_on_windows():
    from training.train_loop import FitConfig, fit

    model = build_model("stage2")  # no dense head: the cell maps only place the windows
    sizes: list[int] = []
    model.features[0].register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[-1]))
    x = torch.rand(16, 1, 64, 64, generator=torch.Generator().manual_seed(0)).numpy()
    cells = np.zeros((16, 2, 2), np.uint8)
    cells[:, 1, 0] = 1
    config = FitConfig(epochs=2, samples_per_epoch=16, batch_size=8, seed=1, crop=32,
                       crop_share=0.5)
    fit(model, x, np.arange(16) % 6, np.ones(16), binary=False, config=config,
        dense_targets=cells)
    assert sizes == [32, 32, 64, 64]
    with pytest.raises(ValueError, match="crop training needs cell maps"):
        fit(build_model("stage2"), x, np.arange(16) % 6, np.ones(16), binary=False,
            config=config)


def test_data_without_masks_trains_on_whole_tiles():
    from rich.console import Console

    from training.pipeline import _crop_or_whole_tiles
    from training.train_loop import FitConfig

    config = FitConfig(crop=128, crop_share=0.85)
    labels = np.r_[0, np.ones(200, int)]  # one normal tile, 200 defect tiles
    cells = np.zeros((201, 7, 7), np.uint8)
    cells[1:, 2, 2] = 1
    console = Console(record=True, width=200)
    assert _crop_or_whole_tiles(config, cells, labels, "stage2", console) is config
    cells[1:3] = UNKNOWN  # 1 % without a known place: they train on whole tiles only
    assert _crop_or_whole_tiles(config, cells, labels, "stage2", console) is config
    assert "2 defect tiles without a known place" in console.export_text()
    cells[3] = UNKNOWN
    for c, why in ((cells, "3 of 200 defect tiles have no mask"),
                   (None, "200 of 200 defect tiles have no mask")):
        whole = _crop_or_whole_tiles(config, c, labels, "stage2", console)
        assert whole.crop == 0 and whole.crop_share == 0.0
        assert why in console.export_text()


def test_window_steps_draw_only_tiles_with_known_cells():
    from training.train_loop import FitConfig, fit

    model = build_model("stage2")
    seen: list[torch.Tensor] = []
    model.features[0].register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    x = np.zeros((8, 1, 64, 64), np.float32)
    x[:, 0, 0, 0] = np.arange(8) / 8  # each tile marked by its index
    cells = np.zeros((8, 2, 2), np.uint8)
    cells[:, 0, 0] = 1
    cells[5] = UNKNOWN
    config = FitConfig(epochs=4, samples_per_epoch=32, batch_size=32, seed=1, crop=32,
                       crop_share=0.5, augment=ONLY_SYMMETRIES)
    fit(model, x, np.arange(8) % 6, np.ones(8), binary=False, config=config,
        dense_targets=cells)

    def tiles_in(batch):  # the marked corner is wherever the symmetry put it
        corners = torch.stack([batch[:, 0, 0, 0], batch[:, 0, 0, -1], batch[:, 0, -1, 0],
                               batch[:, 0, -1, -1]]).amax(0)
        return set((corners * 8).round().int().tolist())

    windows, whole = seen[:2], seen[2:]
    assert all(b.shape[-1] == 32 for b in windows) and all(b.shape[-1] == 64 for b in whole)
    assert 5 not in set().union(*map(tiles_in, windows))
    assert 5 in set().union(*map(tiles_in, whole))


def test_outlier_tiles_are_pushed_to_a_uniform_answer():
    import torch.nn.functional as F

    from training.train_loop import FitConfig, _loss_with_outliers

    config = FitConfig(label_smoothing=0.0, outlier_weight=0.5)
    logits = torch.tensor([[3.0, 0, 0, 0, 0, 0], [0, 2.0, 0, 0, 0, 0]], requires_grad=True)
    known = torch.tensor([0, 1])
    # no outlier: plain cross-entropy
    torch.testing.assert_close(_loss_with_outliers(logits, known, config),
                               F.cross_entropy(logits, known))
    # an outlier's loss is smallest at the uniform answer, and pulls a peak down
    outlier = torch.tensor([0, -1])
    _loss_with_outliers(logits, outlier, config).backward()
    assert logits.grad[1, 1] > 0 and bool((logits.grad[1, [0, 2, 3, 4, 5]] < 0).all())
    flat = torch.zeros(1, 6, requires_grad=True)
    _loss_with_outliers(flat, torch.tensor([-1]), config).backward()
    assert float(flat.grad.abs().max()) < 1e-7
