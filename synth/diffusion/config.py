"""The model folder's architecture and labels (plain data, no torch).

The default model works on **64×64 grayscale tiles**: it has to train on a workstation's
CPU cores (2 on the build machine) in minutes to hours, and a UNet's cost grows with the
pixel count, so 64 px costs about a twelfth of the 224-px tile the classifiers read.
Samples are upsampled to the requested ``--size`` (224 by default) when written. The
price is fine detail: structures under ~3.5 px at 224 (1 px at 64) cannot be drawn.

Conditioning: one learned embedding per label (``UNet2DModel`` with ``num_class_embeds``,
added to the timestep embedding) over the eight folders :data:`LABELS` plus a null class
:data:`NULL_CLASS` that training substitutes for the label with probability
``cond_dropout``, so one network gives both the conditional and the unconditional
prediction that classifier-free guidance mixes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from synth.recipe import ALL_LABELS

FORMAT = "semedge-diffusion/1"
"""``config.json`` ``format``: a folder of another format is refused."""

LABELS: tuple[str, ...] = ALL_LABELS
"""The conditioning labels, in embedding order: ``edge.classes.CLASSES`` + ``other_defect``."""

NULL_CLASS = len(LABELS)
"""Embedding index of "no label" (classifier-free guidance)."""

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "train_state.pt"


@dataclass(frozen=True)
class Architecture:
    """What fixes the network and its noise schedule; stored in ``config.json``."""

    resolution: int = 64
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    attention: bool = True
    """Self-attention at the lowest resolution level (and in the middle block)."""
    norm_num_groups: int = 8
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    cond_dropout: float = 0.1

    def __post_init__(self) -> None:
        chans = self.block_out_channels
        levels = len(chans)
        if not isinstance(self.resolution, int) or self.resolution < 8:
            raise ValueError(f"resolution must be an integer >= 8, got {self.resolution!r}")
        if not chans or any(not isinstance(c, int) or c <= 0 for c in chans):
            raise ValueError(f"block_out_channels must be positive integers, got {chans!r}")
        if any(c % self.norm_num_groups for c in chans):
            raise ValueError(f"block_out_channels {chans} must be multiples of "
                             f"norm_num_groups {self.norm_num_groups}")
        if self.resolution % (2 ** (levels - 1)):
            raise ValueError(f"resolution {self.resolution} must be divisible by "
                             f"2**{levels - 1} for {levels} levels")
        if self.layers_per_block < 1 or self.num_train_timesteps < 2:
            raise ValueError("layers_per_block must be >= 1 and num_train_timesteps >= 2")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be epsilon or v_prediction, "
                             f"got {self.prediction_type!r}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout!r}")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (tuples as lists)."""
        data = asdict(self)
        data["block_out_channels"] = list(self.block_out_channels)
        return data

    @classmethod
    def from_json(cls, data: Any) -> Architecture:
        """Inverse of :meth:`to_json`; unknown or missing keys raise ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError("architecture must be a JSON object")
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            extra, missing = sorted(set(data) - names), sorted(names - set(data))
            raise ValueError(f"architecture keys differ: unknown {extra}, missing {missing}")
        try:
            return cls(**{**data, "block_out_channels": tuple(data["block_out_channels"])})
        except TypeError as exc:
            raise ValueError(f"architecture: {exc}") from None
