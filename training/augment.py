"""Batch augmentation on tensors, the ways SEM images vary.

Works on a normalized ``[B, 1, S, S]`` batch (values in [0, 1], the edge's output), all
randomness from one ``torch.Generator`` (deterministic for a seed). Per sample:

* dihedral: a random 90° rotation and a random horizontal flip (all 8 symmetries), one
  draw per quarter of the batch;
* polarity inversion ``1 - x`` (bright-on-dark and dark-on-bright patterns);
* resolution: downscale by 0.45–0.9 and upscale back, bilinear (real crops of
  128 px are upscaled to 224 by the ``small_image`` rule: they are softer than synth);
* beam blur: Gaussian, σ from 0.5 to 1.6 px (separable shifted multiply-adds, reflect-101);
* gamma (0.6–1.6) and contrast (0.6–1.3) changes;
* shot/read noise: Gaussian, σ up to 0.10, partly signal-dependent;
* re-normalization: each tile is mapped back through its own 1st/99th percentiles and
  clipped to [0, 1], as ``edge.preprocess`` would have done to the altered image.

The parameters live in :class:`AugmentConfig` (a recipe can override them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = ["AugmentConfig", "augment_batch", "augment_batch_with_masks"]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation."""

    p_invert: float = 0.3
    p_resample: float = 0.4
    resample_scale: tuple[float, float] = (0.45, 0.9)
    p_blur: float = 0.4
    blur_sigma: tuple[float, float] = (0.5, 1.6)
    p_gamma: float = 0.5
    gamma: tuple[float, float] = (0.6, 1.6)
    p_contrast: float = 0.5
    contrast: tuple[float, float] = (0.6, 1.3)
    p_noise: float = 0.6
    noise_sigma: tuple[float, float] = (0.01, 0.10)
    renormalize: bool = True

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        """The config from a recipe's ``augment`` table; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown augment keys {sorted(unknown)}; known: {sorted(known)}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)

    def with_overrides(self, data: dict) -> AugmentConfig:
        """A copy with some keys replaced (a model's own ``[stageN.augment]`` table)."""
        known = {f.name for f in fields(self)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown augment keys {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **{k: tuple(v) if isinstance(v, list) else v
                                for k, v in data.items()})


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=gen.device)


def _mask(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device) < p


@lru_cache(maxsize=64)
def _blur_taps(sigma: float) -> tuple[int, tuple[float, ...]]:
    """Radius and weights of a normalised Gaussian, ``radius = ceil(2.5 σ)`` (cached:
    sigmas come in bins of 0.25 px)."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma * sigma))
    return radius, tuple((k / k.sum()).tolist())


def _blur_axis(x: torch.Tensor, taps: tuple[float, ...], radius: int, dim: int) -> torch.Tensor:
    pad = (radius, radius, 0, 0) if dim == -1 else (0, 0, radius, radius)
    padded = F.pad(x, pad, mode="reflect")  # reflect-101, as OpenCV's default border
    n = x.shape[dim]
    out = padded.narrow(dim, 0, n) * taps[0]
    for i in range(1, len(taps)):
        out.add_(padded.narrow(dim, i, n), alpha=taps[i])
    return out


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur as shifted multiply-adds: the kernel spans at most 15
    taps, so this does ~1/15 of a dense blur matrix's work (3-7x faster here)."""
    radius, taps = _blur_taps(sigma)
    if min(x.shape[-2:]) <= radius:  # reflect padding needs the tile wider than the radius
        raise ValueError(f"blur sigma {sigma} too wide for a {tuple(x.shape[-2:])} tile")
    return _blur_axis(_blur_axis(x, taps, radius, -1), taps, radius, -2)


def _dihedral(x: torch.Tensor, gen: torch.Generator, groups: int = 4,
              masks: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One of the 8 symmetries (rot90 × flip) per group of consecutive samples, applied
    alike to ``masks`` (``[B, 1, g, g]`` cell maps of the same tiles) when given.

    Whole-group transforms avoid per-sample indexing; the sampler already shuffles, so
    group membership is random.
    """
    parts, mparts = [], []
    mchunks = torch.chunk(masks, groups) if masks is not None else None
    for i, chunk in enumerate(torch.chunk(x, groups)):
        m = mchunks[i] if mchunks is not None else None
        k = int(torch.randint(0, 4, (1,), generator=gen, device=gen.device))
        if k:
            chunk = torch.rot90(chunk, k, dims=(2, 3))
            m = torch.rot90(m, k, dims=(2, 3)) if m is not None else None
        if bool(torch.rand(1, generator=gen, device=gen.device) < 0.5):
            chunk = torch.flip(chunk, dims=(3,))
            m = torch.flip(m, dims=(3,)) if m is not None else None
        parts.append(chunk)
        mparts.append(m)
    return (torch.cat(parts).contiguous(),
            torch.cat(mparts).contiguous() if masks is not None else None)


def _renormalize(x: torch.Tensor) -> torch.Tensor:
    """Each tile through its own 1st/99th percentiles into [0, 1], in place."""
    n = x.shape[0]
    sample = x[:, :, 1::6, 1::6].reshape(n, -1)  # ~1400 pixels of a 224 tile
    m = sample.shape[1]
    lo = torch.kthvalue(sample, max(1, round(0.01 * m)), dim=1).values.view(n, 1, 1, 1)
    hi = torch.kthvalue(sample, max(1, round(0.99 * m)), dim=1).values.view(n, 1, 1, 1)
    scale = torch.where(hi - lo > 1e-6, 1.0 / (hi - lo), torch.zeros_like(hi))
    return x.sub_(lo).mul_(scale).clamp_(0.0, 1.0)


def augment_batch(x: torch.Tensor, gen: torch.Generator,
                  config: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """Return an augmented float32 copy of ``x`` (``[B, 1, S, S]``, values in [0, 1]).

    ``gen`` must live on ``x``'s device (a CUDA generator for a CUDA batch)."""
    return augment_batch_with_masks(x, gen, config)[0]


def augment_batch_with_masks(x: torch.Tensor, gen: torch.Generator,
                             config: AugmentConfig = AugmentConfig(),
                             masks: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`augment_batch`, also returning ``masks`` (``[B, 1, g, g]`` per-cell defect
    maps of the same tiles, ``g`` dividing ``S``) under the same symmetries. The other
    steps keep the geometry (resampling goes down and back up to ``S``), so the cells
    stay where they were. Same random draws as without masks."""
    x = x.float()
    n, _, h, w = x.shape
    x, masks = _dihedral(x, gen, masks=masks)

    inv = torch.nonzero(_mask(n, config.p_invert, gen)).flatten()
    if len(inv):
        x[inv] = 1.0 - x[inv]

    res = torch.nonzero(_mask(n, config.p_resample, gen)).flatten()
    if len(res):
        scales = _uniform(len(res), *config.resample_scale, gen)
        # group into a few scale bins so each bin is one interpolate call
        bins = torch.round(scales * 10) / 10
        for s in torch.unique(bins).tolist():
            idx = res[bins == s]
            size = (max(8, round(h * s)), max(8, round(w * s)))
            small = F.interpolate(x[idx], size=size, mode="bilinear", antialias=True,
                                  align_corners=False)
            x[idx] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)

    blur = torch.nonzero(_mask(n, config.p_blur, gen)).flatten()
    if len(blur):
        sig = _uniform(len(blur), *config.blur_sigma, gen)
        bins = torch.round(sig * 4) / 4
        for s in torch.unique(bins).tolist():
            idx = blur[bins == s]
            x[idx] = _gaussian_blur(x[idx], max(0.3, s))

    # the photometric changes touch only the samples drawn for them
    gam = torch.nonzero(_mask(n, config.p_gamma, gen)).flatten()
    g = _uniform(len(gam), *config.gamma, gen).view(-1, 1, 1, 1)
    if len(gam):
        x[gam] = x[gam].clamp_(0.0, 1.0).pow_(g)

    con = torch.nonzero(_mask(n, config.p_contrast, gen)).flatten()
    c = _uniform(len(con), *config.contrast, gen).view(-1, 1, 1, 1)
    if len(con):
        sub = x[con]
        mean = sub.mean(dim=(2, 3), keepdim=True)
        x[con] = sub.sub_(mean).mul_(c).add_(mean)

    noisy = torch.nonzero(_mask(n, config.p_noise, gen)).flatten()
    sigma = _uniform(len(noisy), *config.noise_sigma, gen).view(-1, 1, 1, 1)
    if len(noisy):
        sub = x[noisy]
        noise = sub.clamp(0.0, 1.0).add_(0.05).sqrt_()  # brighter pixels are noisier
        noise.mul_(sigma).mul_(torch.randn(sub.shape, generator=gen, device=x.device))
        x[noisy] = sub.add_(noise)

    if config.renormalize:
        return _renormalize(x), masks
    return x.clamp(0.0, 1.0), masks
