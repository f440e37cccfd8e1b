"""Train (or resume training) a model folder within a time budget."""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synth.diffusion.config import CONFIG_NAME, NULL_CLASS, STATE_NAME, WEIGHTS_NAME, Architecture
from synth.diffusion.data import Tiles, load_tiles
from synth.diffusion.model import build_unet, training_scheduler
from synth.diffusion.store import ModelFolderError, load_state, load_weights, read_config, save


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    folder: Path
    steps_trained: int
    steps_this_run: int
    seconds: float
    loss: float | None
    resumed: bool
    interrupted: bool = False


@dataclass(frozen=True)
class Settings:
    """Optimisation settings (recorded in ``config.json``)."""

    batch: int = 32
    lr: float = 2e-4
    ema_decay: float = 0.999
    grad_clip: float = 1.0


def _run_seed(seed: int, step: int) -> int:
    """The generator seed of a run starting at ``step`` (a resumed run draws anew)."""
    return int(np.random.SeedSequence([int(seed), int(step)]).generate_state(1, np.uint64)[0])


def _prior(out: Path, arch: Architecture | None) -> tuple[dict[str, Any] | None, Architecture]:
    """The existing model's config (resume) or None for a fresh folder; the architecture."""
    if (out / CONFIG_NAME).exists():
        config = read_config(out)
        if arch is not None and arch != config["architecture"]:
            raise ModelFolderError(f"{out / CONFIG_NAME}: holds another architecture; "
                                   "train into a new folder")
        return config, config["architecture"]
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        held = [n for n in (WEIGHTS_NAME, STATE_NAME) if (out / n).exists()]
        if held:
            raise ModelFolderError(f"{out / CONFIG_NAME}: missing, but the folder holds "
                                   f"{', '.join(held)} (an incomplete model folder)")
        raise ValueError(f"out {str(out)!r} exists, is not empty and holds no model")
    return None, arch or Architecture()


class _Ema:
    """Exponential moving average of the weights (the sampling weights), warmed up."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for pe, p in zip(self.model.parameters(), model.parameters()):
            pe.lerp_(p.detach(), 1.0 - d)


def _step(model: torch.nn.Module, sched: Any, tiles: torch.Tensor, labels: torch.Tensor,
          arch: Architecture, batch: int, g: torch.Generator) -> torch.Tensor:
    """The loss of one random batch (mirroring, label dropout, noise level, noise).

    Tiles are mirrored left-right only: upside down, a cross-section would have its
    substrate on top and a micrograph its info bar."""
    n = tiles.shape[0]
    idx = torch.randint(n, (batch,), generator=g)
    x0 = tiles[idx] * 2.0 - 1.0
    flip = torch.rand(batch, 1, 1, 1, generator=g) < 0.5
    x0 = torch.where(flip, x0.flip(-1), x0)
    y = labels[idx]
    y = torch.where(torch.rand(batch, generator=g) < arch.cond_dropout,
                    torch.full_like(y, NULL_CLASS), y)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, arch.num_train_timesteps, (batch,), generator=g)
    xt = sched.add_noise(x0, noise, t)
    target = noise if arch.prediction_type == "epsilon" else sched.get_velocity(x0, noise, t)
    pred = model(xt, t, class_labels=y).sample
    return torch.nn.functional.mse_loss(pred, target)


def train(data: str | Path, out: str | Path, *, minutes: float = 30.0, seed: int = 0,
          settings: Settings | None = None, max_steps: int | None = None,
          arch: Architecture | None = None, checkpoint_minutes: float = 5.0,
          progress: bool = True, log: Callable[[str], None] = print) -> TrainResult:
    """Train the model in ``out`` on ImageFolder ``data`` for ``minutes`` (or ``max_steps``
    optimizer steps, whichever ends first); continue from ``out`` when it holds a model.

    The folder is saved every ``checkpoint_minutes``, at the end and on Ctrl-C.
    """
    settings = settings or Settings()
    if minutes <= 0 or settings.batch < 1 or (max_steps is not None and max_steps < 0):
        raise ValueError("minutes must be > 0, batch >= 1 and max_steps >= 0")
    out = Path(out)
    prior, arch = _prior(out, arch)
    state = load_state(out, prior) if prior is not None else None  # checked before any work
    ema_weights = load_weights(out, prior)[0] if prior is not None else None
    with _progress(progress, "{task.completed:.0f}/{task.total:.0f}") as bar:
        tiles = load_tiles(data, arch.resolution, progress=bar if bar.enabled else None)
    if prior is not None and prior["data"]["sha256"] != tiles.provenance["sha256"]:
        raise ValueError(f"{data}: not the data the model in {out} was trained on "
                         f"(data sha256 {tiles.provenance['sha256'][:12]}…, the model's "
                         f"{prior['data']['sha256'][:12]}…); train into a new folder")
    torch.manual_seed(seed)
    model = build_unet(arch)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    ema = _Ema(model, settings.ema_decay)
    step = 0
    if prior is not None and state is not None:
        for name, load in ((STATE_NAME, lambda: (model.load_state_dict(state["model"]),
                                                 opt.load_state_dict(state["optimizer"]))),
                           (WEIGHTS_NAME, lambda: ema.model.load_state_dict(ema_weights))):
            try:
                load()
            except (RuntimeError, ValueError, KeyError) as exc:
                raise ModelFolderError(f"{out / name}: does not fit the architecture in "
                                       f"{CONFIG_NAME} ({str(exc).splitlines()[0]})") from None
        step = int(state["step"])
        log(f"resuming {out} at step {step}")
    return _loop(model, opt, ema, tiles, arch, settings, out, prior, step, seed, minutes,
                 max_steps, checkpoint_minutes, progress, log)


def _loop(model: torch.nn.Module, opt: torch.optim.Optimizer, ema: _Ema, tiles: Tiles,
          arch: Architecture, settings: Settings, out: Path, prior: dict[str, Any] | None,
          start: int, seed: int, minutes: float, max_steps: int | None,
          checkpoint_minutes: float, progress: bool, log: Callable[[str], None]
          ) -> TrainResult:
    sched = training_scheduler(arch)
    x, y = torch.from_numpy(tiles.x), torch.from_numpy(tiles.y)
    g = torch.Generator().manual_seed(_run_seed(seed, start))
    runs = list(prior["training"]["runs"]) if prior else []
    run = {"start_step": start, "seed": seed, "batch": settings.batch,
           "minutes_budget": minutes, "date": dt.date.today().isoformat()}
    step, loss_avg, interrupted = start, None, False
    t0 = time.monotonic()
    budget, last_save = minutes * 60.0, t0

    def checkpoint() -> None:
        run.update(end_step=step, seconds=round(time.monotonic() - t0, 1))
        config = {"architecture": arch.to_json(), "steps_trained": step,
                  "data": tiles.provenance, "loss_ema": loss_avg,
                  "training": {"optimizer": "AdamW", "lr": settings.lr,
                               "ema_decay": settings.ema_decay,
                               "grad_clip": settings.grad_clip, "runs": [*runs, run]},
                  "versions": _versions()}
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}
        save(out, ema.model.state_dict(), state, config)

    model.train()
    with _progress(progress, "") as bar:
        total = max_steps if max_steps is not None else budget
        job = bar.add_task("training", total=total) if bar.enabled else None
        try:
            while (max_steps is None or step - start < max_steps) and \
                    time.monotonic() - t0 < budget:
                loss = _step(model, sched, x, y, arch, settings.batch, g)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                opt.step()
                step += 1
                ema.update(model, step)
                v = float(loss.detach())
                loss_avg = v if loss_avg is None else 0.98 * loss_avg + 0.02 * v
                if job is not None:
                    done = step - start if max_steps is not None else time.monotonic() - t0
                    bar.update(job, completed=done,
                               description=f"step {step} loss {loss_avg:.4f}")
                if time.monotonic() - last_save > checkpoint_minutes * 60.0:
                    checkpoint()
                    last_save = time.monotonic()
        except KeyboardInterrupt:
            interrupted = True
    checkpoint()
    if interrupted:
        log(f"interrupted at step {step}; saved {out} (the same command resumes it)")
    return TrainResult(out, step, step - start, time.monotonic() - t0, loss_avg,
                       prior is not None, interrupted)


def _versions() -> dict[str, str]:
    import diffusers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__}


def _progress(show: bool, count: str) -> Any:
    """A rich progress bar with elapsed and remaining time (or a no-op stand-in)."""
    from synth.dataset import _NoBar

    if not show:
        return _NoBar()
    from rich.progress import BarColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    p = Progress("[progress.description]{task.description}", BarColumn(), count,
                 TimeElapsedColumn(), TimeRemainingColumn())
    p.enabled = True
    return p
