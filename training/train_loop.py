"""The training loop shared by the three models: balanced sampling, augmentation, AdamW
with a one-cycle schedule, channels-last on CPU, deterministic for a seed; data-parallel
(``DistributedDataParallel``) when a ``torch.distributed`` group of several ranks is up."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.augment import AugmentConfig
from training.distributed import join_group, local_batch, rank_seed

__all__ = ["EarlyStopping", "FitConfig", "FitResult", "balanced_weights", "crop_batch", "fit",
           "predict_logits", "set_determinism"]


@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of one model's training run."""

    epochs: int = 10
    samples_per_epoch: int | None = None  # None: the number of training tiles
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    aux_weight: float = 0.5  # weight of the aux head's cross-entropy (models with one)
    dense_weight: float = 1.0  # weight of the dense head's per-cell BCE (models with one)
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    crop: int = 0  # train on crops of this many px (0: whole tiles); needs dense targets
    crop_share: float = 0.0  # the share of the steps, from the start, trained on crops
    outlier_weight: float = 0.0  # class models: weight of the uniform-target loss on
                                 # outlier tiles (target -1, e.g. other_defect)
    patience: int = 0  # with a validation score: stop after this many epochs without a
                       # better one and keep the best epoch's weights (0: off)
    focal_gamma: float = 0.0  # binary models: focal loss exponent (0: plain BCE)


@dataclass
class FitResult:
    """What a run did: per-epoch loss/accuracy, throughput and time."""

    history: list[dict[str, float]]
    images_per_second: float
    seconds: float
    samples: int
    crop_samples: int = 0  # of ``samples``, those trained as windows (crop training)
    best_epoch: int | None = None  # the epoch whose weights were kept (validation only)
    stopped_early: bool = False


def set_determinism(seed: int, threads: int = 2) -> None:
    """Seed torch, fix the thread count, prefer deterministic kernels.

    (numpy randomness in training goes through seeded ``np.random.default_rng`` only.)
    """
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def balanced_weights(groups: np.ndarray, group_share: dict[int, float] | None = None
                     ) -> np.ndarray:
    """Per-sample sampling weights so each group gets its share of every epoch.

    ``group_share`` maps group → share (normalised); missing groups share the rest
    equally; by default every group gets the same share (class balancing).
    """
    groups = np.asarray(groups)
    values, counts = np.unique(groups, return_counts=True)
    share = dict(group_share or {})
    rest = [v for v in values.tolist() if v not in share]
    left = max(0.0, 1.0 - sum(share.get(v, 0.0) for v in values.tolist()))
    for v in rest:
        share[v] = left / len(rest) if group_share else 1.0 / len(values)
    total = sum(share[v] for v in values.tolist())
    w = np.zeros(len(groups), dtype=np.float64)
    for v, c in zip(values.tolist(), counts.tolist()):
        w[groups == v] = share[v] / total / c
    return w


def fit(model, x: np.ndarray, targets: np.ndarray, weights: np.ndarray, *,
        binary: bool, config: FitConfig, progress=None, description: str = "training",
        device: str = "cpu", aux_targets: np.ndarray | None = None,
        dense_targets: np.ndarray | None = None,
        validate: Callable[[Any], float] | None = None) -> FitResult:
    """Train ``model`` in place on cached tiles ``x`` (``[N, 1, S, S]``, float16/32).

    ``targets``: 0/1 for a binary model (one logit, BCE), class index otherwise (CE with
    label smoothing). ``weights``: per-sample sampling weights (``balanced_weights``).
    ``aux_targets``: class indices for the model's aux head (-100: no class), if it has
    one; its cross-entropy is added with weight ``config.aux_weight``.
    ``dense_targets``: ``uint8 [N, g, g]`` cell maps over the model's last feature grid
    (``training.cell_masks``: 0/1, 255 = unknown); with a dense head the BCE over the
    known cells is added with weight ``config.dense_weight``, and with ``config.crop``
    the first ``crop_share`` of the steps train on ``crop``-px windows that keep each
    defect (:func:`crop_batch`; drawn from the tiles whose cells are all known).
    ``device``: where the model and augmentation run ("cpu", or "cuda" where available;
    the model is moved back to the CPU at the end).
    ``validate``: the model (in eval mode) → a score, higher is better, after every epoch
    (in the history as ``val_score``); with ``config.patience`` the run stops after that
    many epochs without a better score and the model keeps the best epoch's weights
    (:class:`EarlyStopping`). Under ``torchrun`` it is not called: every rank runs the
    whole schedule.

    Under ``torchrun`` (``WORLD_SIZE`` = N > 1; the process joins the group if it has not,
    ``training.distributed.join_group``) the model trains in ``DistributedDataParallel``:
    every rank draws the epoch's global sample indices from the same seed and takes its
    part of each global batch (``local_batch``), so the N ranks together train the same
    samples per epoch as one process; BatchNorm statistics stay per rank. Each rank
    augments with its own stream (``rank_seed``).
    """
    import torch
    import torch.nn.functional as F

    from training.augment import augment_batch_with_masks

    n = len(targets)
    if n == 0:
        raise ValueError(f"{description}: no training tiles")
    per_epoch = config.samples_per_epoch or n
    steps = max(1, per_epoch // config.batch_size)
    total_steps = steps * config.epochs
    rank, world = join_group(device)
    gen = torch.Generator().manual_seed(config.seed)
    # on the CPU the sampler and augmentation share one stream (as they always did); ranks
    # must draw the same indices, so under DDP augmentation has a stream of its own
    aug_gen = (gen if device == "cpu" and world == 1 else torch.Generator(device=device)
               .manual_seed(rank_seed(config.seed, rank) if world > 1 else config.seed))
    torch.manual_seed(config.seed)
    model.to(device)
    model.train()
    model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=total_steps, pct_start=0.15,
        div_factor=10.0, final_div_factor=100.0)
    w = torch.as_tensor(weights, dtype=torch.float64)
    y_all = torch.as_tensor(np.asarray(targets), dtype=torch.float32 if binary else torch.int64
                            ).to(device)
    use_aux = aux_targets is not None and getattr(model, "aux", None) is not None
    aux_all = (torch.as_tensor(np.asarray(aux_targets), dtype=torch.int64).to(device)
               if use_aux else None)
    use_dense = (dense_targets is not None and config.dense_weight > 0
                 and getattr(model, "dense", None) is not None)
    crop_steps = _crop_steps(config, total_steps, dense_targets is not None, description)
    dense_all = (torch.from_numpy(np.ascontiguousarray(dense_targets)).unsqueeze(1)
                 if use_dense or crop_steps else None)
    w_crop = _window_weights(w, dense_all, description) if crop_steps else None
    net = _data_parallel(model, use_aux, use_dense, device) if world > 1 else None
    task = progress.add_task(description, total=total_steps) if progress is not None else None
    history: list[dict[str, float]] = []
    stopper = EarlyStopping(config.patience) if validate is not None and world == 1 else None
    start = time.perf_counter()
    steps_done = 0
    for epoch in range(config.epochs):
        idx_all = torch.multinomial(w, steps * config.batch_size, replacement=True,
                                    generator=gen)
        # window steps draw from the tiles whose defect cells are all known
        idx_crop = (torch.multinomial(w_crop, steps * config.batch_size, replacement=True,
                                      generator=gen)
                    if epoch * steps < crop_steps else None)
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(steps):
            cropping = epoch * steps + step < crop_steps
            idx = (idx_crop if cropping else idx_all)[
                step * config.batch_size:(step + 1) * config.batch_size]
            if world > 1:
                idx = local_batch(idx, rank, world)
            xb = torch.from_numpy(x[idx.numpy()]).to(device, non_blocking=True)
            mb = dense_all[idx].to(device) if dense_all is not None else None
            if cropping:
                xb, mb = crop_batch(xb, mb, config.crop, aug_gen)
            xb, mb = augment_batch_with_masks(xb, aug_gen, config.augment, mb)
            xb = xb.contiguous(memory_format=torch.channels_last)
            idx_dev = idx.to(device)
            yb = y_all[idx_dev]
            if net is not None:
                out, aux_out, dense_out = net(xb)
            else:
                out, aux_out, dense_out = (model.forward_training(xb) if use_aux or use_dense
                                           else (model(xb), None, None))
            aux_out = aux_out if use_aux else None
            if binary:
                out = out[:, 0]
                loss = binary_loss(out, yb, config.focal_gamma)
                correct += int(((out > 0).float() == yb).sum())
            elif config.outlier_weight > 0:
                loss = _loss_with_outliers(out, yb, config)
                correct += int((out.argmax(1) == yb).sum())  # an outlier (-1) is never right
            else:
                loss = F.cross_entropy(out, yb, label_smoothing=config.label_smoothing)
                correct += int((out.argmax(1) == yb).sum())
            if aux_out is not None:
                loss = loss + config.aux_weight * F.cross_entropy(
                    aux_out, aux_all[idx_dev], ignore_index=-100)
            if use_dense:
                loss = loss + config.dense_weight * _dense_loss(dense_out, mb, description)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
            steps_done += 1
            if task is not None:
                progress.update(task, advance=1, description=(
                    f"{description} e{epoch + 1}/{config.epochs} "
                    f"loss {loss_sum / seen:.3f} acc {correct / seen:.3f}"))
        if world > 1:  # the epoch's numbers over every rank's samples
            loss_sum, correct, seen = _sum_over_ranks((loss_sum, correct, seen), device)
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "accuracy": correct / seen})
        if stopper is not None and _validate_epoch(model, validate, stopper, history):
            break
    seconds = time.perf_counter() - start
    model.eval()
    if stopper is not None and stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
    model.to("cpu")
    model.to(memory_format=torch.contiguous_format)
    samples = steps_done * config.batch_size
    return FitResult(history, samples / seconds if seconds > 0 else 0.0, seconds, samples,
                     min(crop_steps, steps_done) * config.batch_size,
                     best_epoch=None if stopper is None else stopper.best_epoch,
                     stopped_early=stopper is not None and stopper.stopped)


class EarlyStopping:
    """The best validation score so far, its epoch and weights, and when to stop.

    The weights kept are the best epoch's. The stop decision follows the mean of the
    last ``window`` scores: on a validation split of a few hundred images one epoch's
    score moves by ±0.02, and a single lucky epoch would otherwise stop a run that is
    still improving. ``patience`` 0 keeps the best weights but never stops early."""

    def __init__(self, patience: int, window: int = 3) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.patience = patience
        self.window = window
        self.best_score = -math.inf
        self.best_epoch: int | None = None
        self.best_state: dict | None = None
        self.stopped = False
        self._scores: list[float] = []
        self._best_smoothed = -math.inf
        self._best_smoothed_epoch: int | None = None

    def update(self, epoch: int, score: float, model) -> bool:
        """Record ``score`` after ``epoch`` (1-based); True when training should stop.
        A score that is not a number (nothing to measure on) never stops a run."""
        if not math.isfinite(score):
            return False
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.best_state = {k: v.detach().to("cpu", copy=True)
                               for k, v in model.state_dict().items()}
        self._scores.append(score)
        recent = self._scores[-self.window:]
        smoothed = sum(recent) / len(recent)
        if smoothed > self._best_smoothed:
            self._best_smoothed, self._best_smoothed_epoch = smoothed, epoch
        self.stopped = (self.patience > 0 and self._best_smoothed_epoch is not None
                        and epoch - self._best_smoothed_epoch >= self.patience)
        return self.stopped


def _validate_epoch(model, validate, stopper: EarlyStopping, history: list) -> bool:
    """Score the model after an epoch, record it, and say whether to stop."""
    import torch

    model.eval()
    with torch.no_grad():
        score = float(validate(model))
    model.train()
    history[-1]["val_score"] = score
    return stopper.update(len(history), score, model)


def _crop_steps(config: FitConfig, total_steps: int, has_cells: bool, description: str
                ) -> int:
    """How many of the first steps train on crops (0 when cropping is off)."""
    if not config.crop or config.crop_share <= 0:
        return 0
    if not has_cells:
        raise ValueError(f"{description}: crop training needs cell maps of where each "
                         "defect is (dense_targets), and none were given")
    return int(round(min(1.0, config.crop_share) * total_steps))


def _window_weights(w, cells, description: str):
    """Sampling weights of the window steps: ``w`` without the tiles that have unknown
    cells (a window could cut their defect off; they train in the whole-tile steps)."""
    from training.cell_masks import UNKNOWN

    known = (cells != UNKNOWN).flatten(1).all(1)
    if not bool((w * known).sum() > 0):
        raise ValueError(f"{description}: no tile with known cells to train windows on")
    return w * known.double()


def crop_batch(x, cells, crop: int, gen):
    """A ``crop``-px window of each tile and of its cell map, on the cell grid.

    A tile with a defect cell gets a window holding at least one of them (so its label
    stays true), a tile without one any window. Unknown cells are refused: a window could
    cut their defect off (``semedge train`` trains such data on whole tiles)."""
    import torch

    from training.cell_masks import UNKNOWN

    size, grid = x.shape[-1], cells.shape[-1]
    cell = size // grid
    if crop % cell or not cell <= crop <= size:
        raise ValueError(f"crop {crop} px is not a multiple of the {cell}-px cell "
                         f"within a {size}-px tile")
    n = crop // cell
    if bool((cells == UNKNOWN).any()):
        raise ValueError("crop training needs every defect's cells; some are unknown")
    positive = (cells == 1).float()
    hits = torch.nn.functional.avg_pool2d(positive, n, stride=1)[:, 0] > 0  # [B, o, o]
    has_defect = hits.flatten(1).any(1)
    allowed = torch.where(has_defect[:, None, None], hits, torch.ones_like(hits))
    score = torch.rand(allowed.shape, generator=gen, device=gen.device).to(x.device)
    pick = torch.where(allowed, score, torch.full_like(score, -1.0)).flatten(1).argmax(1)
    o = hits.shape[-1]
    oy, ox = pick // o, pick % o
    xs = torch.stack([x[i, :, y * cell:y * cell + crop, z * cell:z * cell + crop]
                      for i, (y, z) in enumerate(zip(oy.tolist(), ox.tolist()))])
    cs = torch.stack([cells[i, :, y:y + n, z:z + n]
                      for i, (y, z) in enumerate(zip(oy.tolist(), ox.tolist()))])
    return xs, cs


def _data_parallel(model, use_aux: bool, use_dense: bool, device: str):
    """``model``'s training forward (only the heads the loss uses) wrapped in DDP.

    A head the model has but the loss does not use (an aux or dense head without targets)
    gets no gradient; DDP is told so (``find_unused_parameters``) only then: it costs a
    graph traversal per step."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    class TrainingForward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x):
            if not (use_aux or use_dense):
                return self.model(x), None, None
            out, aux, dense = self.model.forward_training(x)
            return out, aux if use_aux else None, dense if use_dense else None

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    unused = ((getattr(model, "aux", None) is not None and not use_aux)
              or (getattr(model, "dense", None) is not None and not use_dense))
    return DistributedDataParallel(TrainingForward(), device_ids=ids,
                                   find_unused_parameters=unused)


def _sum_over_ranks(values: tuple[float, int, int], device: str) -> tuple[float, int, int]:
    """``(loss sum, correct, seen)`` summed over the ranks."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0]), int(t[1]), int(t[2])


def binary_loss(logits, targets, gamma: float = 0.0):
    """BCE with logits; with ``gamma`` > 0 the focal loss (Lin et al. 2017): each
    sample's BCE times ``(1 − p_t)^gamma``, so confident right answers count less and
    the training signal goes to the tiles near the normal/defect boundary."""
    import torch
    import torch.nn.functional as F

    if gamma == 0:
        return F.binary_cross_entropy_with_logits(logits, targets)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return ((1 - torch.exp(-bce)) ** gamma * bce).mean()


def _loss_with_outliers(logits, targets, config: FitConfig):
    """Cross-entropy on the tiles of a class (target ≥ 0) plus, weighted by
    ``config.outlier_weight``, the cross-entropy to the uniform distribution on the
    outlier tiles (target -1): outlier exposure, which teaches the model to be unsure on
    defects of no class it knows, so that a low top probability means ``unknown``."""
    import torch.nn.functional as F

    known = targets >= 0
    loss = logits.sum() * 0.0
    if bool(known.any()):
        loss = loss + F.cross_entropy(logits[known], targets[known],
                                      label_smoothing=config.label_smoothing) * known.float().mean()
    if bool((~known).any()):
        uniform = -F.log_softmax(logits[~known], dim=1).mean(dim=1).mean()
        loss = loss + config.outlier_weight * uniform * (~known).float().mean()
    return loss


def _dense_loss(logits, cells, description: str):
    """Per-cell BCE over the known cells (0/1; ``UNKNOWN`` cells are skipped)."""
    import torch.nn.functional as F

    from training.cell_masks import UNKNOWN

    if logits.shape[-2:] != cells.shape[-2:]:
        raise ValueError(f"{description}: dense targets are {tuple(cells.shape[-2:])} "
                         f"cells, the model's map is {tuple(logits.shape[-2:])}")
    known = cells[:, 0] != UNKNOWN
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[:, 0][known], cells[:, 0][known].float())


def predict_logits(model, x: np.ndarray, *, batch_size: int = 128) -> np.ndarray:
    """Logits of ``model`` (eval mode, no augmentation) for tiles ``x``, float32."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32))
            xb = xb.to(device).contiguous(memory_format=torch.channels_last)
            outs.append(model(xb).float().cpu().numpy())
    if not outs:
        return np.zeros((0, model.arch.outputs), dtype=np.float32)
    return np.concatenate(outs)
