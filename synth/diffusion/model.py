"""The network and the noise schedules (torch + diffusers)."""

from __future__ import annotations

from typing import Any

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel

from synth.diffusion.config import LABELS, Architecture

SAMPLERS = ("ddim", "dpm")
"""``ddim`` (the default): DDIM with eta 0 and the clean-image prediction clipped;
``dpm``: DPM-Solver++ (2M) with dynamic thresholding; both deterministic given the
starting noise, and good in 10-50 steps."""


def build_unet(arch: Architecture) -> UNet2DModel:
    """A 1-channel ``UNet2DModel`` with one class embedding per label plus the null class."""
    levels = len(arch.block_out_channels)
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if arch.attention and levels > 1:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=arch.resolution, in_channels=1, out_channels=1,
        block_out_channels=tuple(arch.block_out_channels),
        layers_per_block=arch.layers_per_block,
        down_block_types=tuple(down), up_block_types=tuple(up),
        norm_num_groups=arch.norm_num_groups,
        attention_head_dim=min(arch.block_out_channels[-1], 32),
        add_attention=arch.attention,
        class_embed_type=None, num_class_embeds=len(LABELS) + 1,
    )


def _schedule(arch: Architecture) -> dict[str, Any]:
    return {"num_train_timesteps": arch.num_train_timesteps,
            "beta_schedule": arch.beta_schedule, "prediction_type": arch.prediction_type}


def training_scheduler(arch: Architecture) -> DDPMScheduler:
    """The DDPM forward process the model is trained on (``add_noise``)."""
    return DDPMScheduler(**_schedule(arch), clip_sample=False)


def sampling_scheduler(name: str, arch: Architecture) -> Any:
    """A fresh few-step sampler over the training schedule (it keeps per-run state)."""
    if name == "dpm":
        # thresholding keeps the predicted clean image in the data range (as DDIM's
        # clip_sample does); without it a model's early x0 overshoots compound into
        # saturated noise over few steps
        return DPMSolverMultistepScheduler(**_schedule(arch), algorithm_type="dpmsolver++",
                                           solver_order=2, thresholding=True,
                                           sample_max_value=1.0,
                                           timestep_spacing="trailing")
    if name == "ddim":
        return DDIMScheduler(**_schedule(arch), clip_sample=True, set_alpha_to_one=False,
                             timestep_spacing="trailing")
    raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
