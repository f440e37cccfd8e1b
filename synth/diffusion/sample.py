"""Few-step classifier-free-guided sampling (torch + diffusers)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from synth.diffusion.config import NULL_CLASS, Architecture
from synth.diffusion.model import SAMPLERS, sampling_scheduler


def check_settings(steps: int, guidance: float, sampler: str, arch: Architecture) -> None:
    """Refuse sampler settings that cannot run (``ValueError`` naming the option)."""
    if not isinstance(steps, int) or not 1 <= steps <= arch.num_train_timesteps:
        raise ValueError(f"steps must be an integer in [1, {arch.num_train_timesteps}], "
                         f"got {steps!r}")
    if not np.isfinite(guidance) or guidance < 0:
        raise ValueError(f"guidance must be a finite number >= 0, got {guidance!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")


def initial_noise(seeds: Sequence[int], resolution: int) -> torch.Tensor:
    """(n, 1, R, R) standard normal noise, image ``k`` from its own generator ``seeds[k]``."""
    return torch.stack([torch.randn((1, resolution, resolution),
                                    generator=torch.Generator().manual_seed(int(s)))
                        for s in seeds])


@torch.inference_mode()
def sample(model: torch.nn.Module, arch: Architecture, class_ids: Sequence[int],
           seeds: Sequence[int], *, steps: int = 20, guidance: float = 2.0,
           sampler: str = "ddim") -> np.ndarray:
    """Sample one image per ``(class_ids[k], seeds[k])``: (n, R, R) float32 in [0, 1].

    ``guidance`` g mixes the conditional and the null-class prediction as
    ``u + g (c - u)``: 1 is the plain conditional model (one network pass per step, not
    two), larger values follow the label more strongly. The samplers add no noise after
    the start, so an image depends only on its seed, label, the model and the settings.
    """
    check_settings(steps, guidance, sampler, arch)
    if len(class_ids) != len(seeds):
        raise ValueError("class_ids and seeds differ in length")
    sched = sampling_scheduler(sampler, arch)
    sched.set_timesteps(steps)
    x = initial_noise(seeds, arch.resolution) * sched.init_noise_sigma
    y = torch.as_tensor(list(class_ids), dtype=torch.long)
    both = torch.cat([y, torch.full_like(y, NULL_CLASS)])
    for t in sched.timesteps:
        xin = sched.scale_model_input(x, t)
        if guidance == 1.0:
            pred = model(xin, t, class_labels=y).sample
        else:
            cond, uncond = model(torch.cat([xin, xin]), t, class_labels=both).sample.chunk(2)
            pred = uncond + guidance * (cond - uncond)
        x = sched.step(pred, t, x).prev_sample
    return ((x.clamp(-1.0, 1.0) + 1.0) / 2.0)[:, 0].float().numpy()
