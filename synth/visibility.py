"""How visible a rendered defect is: the Rose criterion on the final image's signal and noise.

A defect is a change to the detector signal. Its visibility ``k`` compares that change with
the image noise at the same pixels:

    k = sqrt( sum over pixels of  ΔS² / σ² )

where ``ΔS`` is the noise-free signal of the rendered image minus the noise-free signal of
the same scene without the defect (same texture, charging, blur and scan jitter: both are
formed from copies of one random generator), and ``σ`` is the per-pixel noise the renderer
then adds (shot and read noise, plus the 8-bit quantisation step). For a defect of uniform
contrast ``C`` over ``A`` pixels under uniform noise this is Rose's ``C·√A / σ``; the sum
extends it to defects whose contrast varies or changes sign (edge roughness pushes an edge
out in one place and in at the next, so a mean contrast would cancel) and to the signal
that blur spreads outside the drawn mask. The reference is the defect-free pattern rather
than a ring of pixels around the defect: on a dense grating such a ring mixes lines and
spaces, and would call a full open invisible.

Row banding (correlated along a scan line) and pixels under overlays (scale bars, info
bars) are left out. The bands (``edge.visibility``): ``k < 3`` sub-visible, ``3 ≤ k < 5``
marginal, ``k ≥ 5`` visible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synth.sem import noise_sd

__all__ = ["rose_visibility"]


def rose_visibility(signal: np.ndarray, reference: np.ndarray, p: dict[str, Any],
                    bit_depth: int = 8, exclude: np.ndarray | None = None) -> float:
    """Visibility ``k`` of the difference between two noise-free signals.

    ``signal`` and ``reference``: float32 signals from :func:`synth.sem.form_signal` (with
    and without the defect); ``p``: the image's SEM parameters (dose, read noise, gain);
    ``exclude``: pixels left out (overlays drawn over the image).
    """
    delta = signal.astype(np.float64) - reference
    if exclude is not None:
        delta[exclude] = 0.0
    var = noise_sd(signal, p).astype(np.float64) ** 2
    if bit_depth == 8:  # the 8-bit step, in signal units, is another noise floor
        var += (1.0 / (255.0 * float(p.get("gain", 1.0)))) ** 2 / 12.0
    np.maximum(var, 1e-12, out=var)  # a dark pixel with no read noise: finite, very visible
    return float(np.sqrt(np.sum(delta * delta / var)))
