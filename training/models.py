"""The three networks of a bundle, built from torch's own modules (no torchvision).

Designed for int8 and for accelerators: only Conv/BatchNorm/ReLU blocks, plain residual
adds and global pooling, so that BatchNorm folds into the convolutions at export, every
op has an int8 kernel in ONNX Runtime (QDQ), TFLite and the Edge TPU, and the NCHW graph
converts without transposes. No hardswish/hardsigmoid, no squeeze-excitation: ONNX
Runtime leaves those in float (a MobileNetV3-style net measured 1.3–4× slower in int8
than in fp32).

All three take ``[N, 1, S, S]`` float32 tiles in [0, 1] (the output of
``edge.preprocess.tile``) and downsample early (a stride-2 stem followed at once by
another stride-2 stage), so a 224×224 tile costs few MACs.

* ``stage1`` — binary normal/defective, one logit (P(defective) = sigmoid), ≤ 100 k params.
* ``stage2`` — six defect classes, ≤ 1.5 M params.
* ``monolithic`` — stage 2's architecture with seven outputs: the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "build_layout",
    "build_model",
    "count_macs",
    "count_parameters",
    "fuse_batchnorm",
    "widen_head",
]


@dataclass(frozen=True)
class Architecture:
    """A network layout: stem width (and its kernel = stride, 2 or 4), then
    ``(channels, blocks, stride)`` per stage."""

    name: str
    stem: int
    stages: tuple[tuple[int, int, int], ...]
    outputs: int
    max_params: int
    stem_stride: int = 2
    aux_outputs: int = 0  # a training-only head (e.g. the 8 labels behind a binary target)
    dense_head: bool = False  # a training-only 1×1 conv: "a defect in this cell", per cell


ARCHITECTURES: dict[str, Architecture] = {
    # stage 1 runs on every tile, so its cost is the cascade's floor: a 4×4 patch stem
    # (6.2 MMAC in all; 0.17 ms/tile fp32 on ORT, 2 threads, vs 0.50 ms with a 3×3 s2 stem)
    # and an 8-way training-only aux head (the labels behind the binary target: +0.08 to
    # +0.11 held-out AUC at the same budget in the recipe sweep, docs/training-results.md)
    "stage1": Architecture("stage1", stem=16, outputs=1, max_params=100_000, stem_stride=4,
                           stages=((24, 0, 2), (32, 1, 2), (48, 1, 2), (64, 1, 1)),
                           aux_outputs=8, dense_head=True),
    "stage2": Architecture("stage2", stem=24, outputs=6, max_params=1_500_000,
                           stages=((32, 0, 2), (64, 1, 2), (128, 2, 2), (192, 2, 2))),
    "monolithic": Architecture("monolithic", stem=24, outputs=7, max_params=1_500_000,
                               stages=((32, 0, 2), (64, 1, 2), (128, 2, 2), (192, 2, 2))),
}
"""Model name → layout; ``stage2`` and ``monolithic`` differ only in their outputs."""

TRAINING_ONLY = ("aux.", "dense.")
"""State-dict prefixes of the heads that only training uses (never exported)."""


class ConvBNReLU(nn.Sequential):
    """``Conv2d(bias=False) → BatchNorm2d → ReLU`` (the ReLU is optional)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1,
                 groups: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Depthwise-separable residual block: ``x + pw(dw(pw_expand(x)))``, then ReLU.

    A plain add, no gating: ONNX Runtime fuses it into a QLinearAdd with uint8
    activations.
    """

    def __init__(self, channels: int, expand: int = 2) -> None:
        super().__init__()
        hidden = channels * expand
        self.body = nn.Sequential(
            ConvBNReLU(channels, hidden, 1),
            ConvBNReLU(hidden, hidden, 3, groups=hidden),
            ConvBNReLU(hidden, channels, 1, relu=False),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class Downsample(nn.Sequential):
    """Stride-2 transition: depthwise 3×3 (stride 2) then pointwise to the new width."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(ConvBNReLU(cin, cin, 3, stride, groups=cin), ConvBNReLU(cin, cout, 1))


class PatchStem(ConvBNReLU):
    """``Conv2d(kernel=stride=k) → BatchNorm → ReLU``: each output sees its own k×k patch."""

    def __init__(self, cout: int, k: int) -> None:
        nn.Sequential.__init__(
            self, nn.Conv2d(1, cout, k, k, 0, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )


class TileNet(nn.Module):
    """Stem (full 3×3 conv, stride 2), stages of ``Downsample`` + residual blocks,
    global average + max pooling (concatenated), one linear layer."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        if arch.stem_stride == 2:
            stem = ConvBNReLU(1, arch.stem, 3, 2)
        else:  # non-overlapping k×k patches: a cheap, exactly-tiling first downsampling
            stem = PatchStem(arch.stem, arch.stem_stride)
        layers: list[nn.Module] = [stem]
        cin = arch.stem
        for i, (cout, blocks, stride) in enumerate(arch.stages):
            if i == 0:  # the second early downsampling: a full conv, cheap at this width
                layers.append(ConvBNReLU(cin, cout, 3, stride))
            else:
                layers.append(Downsample(cin, cout, stride))
            layers.extend(ResidualBlock(cout) for _ in range(blocks))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.max = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(2 * cin, arch.outputs)
        # not part of forward(), so never exported: only its gradients reach the features
        self.aux = nn.Linear(2 * cin, arch.aux_outputs) if arch.aux_outputs else None
        # training-only too: one logit per feature cell, trained on where the defect is
        self.dense = nn.Conv2d(cin, 1, 1) if arch.dense_head else None

    def _pool(self, f: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.avg(f), self.max(f)], dim=1).flatten(1)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self._pool(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(x))

    def forward_training(self, x: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(outputs, aux outputs, dense cell logits [N, 1, g, g])``; the training-only
        heads a model lacks give ``None``."""
        f = self.features(x)
        p = self._pool(f)
        return (self.head(p), self.aux(p) if self.aux is not None else None,
                self.dense(f) if self.dense is not None else None)


def build_model(name: str, outputs: int | None = None) -> TileNet:
    """A freshly initialised model ``stage1``, ``stage2`` or ``monolithic``; ``outputs``
    replaces the layout's (stage 2 with its other output has 7)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    return build_layout(arch if outputs is None else replace(arch, outputs=outputs))


def widen_head(model: TileNet, outputs: int) -> TileNet:
    """``model`` with ``outputs`` outputs: the trained rows kept, each new row started at
    their mean (so it begins as likely as an average class). Never narrows."""
    old = model.head
    if outputs <= old.out_features:
        return model
    new = nn.Linear(old.in_features, outputs)
    with torch.no_grad():
        new.weight[:old.out_features] = old.weight
        new.bias[:old.out_features] = old.bias
        new.weight[old.out_features:] = old.weight.mean(0)
        new.bias[old.out_features:] = old.bias.mean()
    model.head = new
    model.arch = replace(model.arch, outputs=outputs)
    return model


def build_layout(arch: Architecture) -> TileNet:
    """A freshly initialised network of any layout (the named ones, or variants of them
    that probes try)."""
    model = TileNet(arch)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    # zero-init the last BN of each residual body: blocks start as identities
    for m in model.modules():
        if isinstance(m, ResidualBlock):
            nn.init.zeros_(m.body[-1][1].weight)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters that are deployed (the training-only ``aux`` and
    ``dense`` heads are not exported, so they are not counted)."""
    return sum(p.numel() for name, p in model.named_parameters()
               if p.requires_grad and not name.startswith(TRAINING_ONLY))


def count_macs(model: nn.Module, size: int = 224) -> int:
    """Multiply-accumulates of one ``[1, 1, size, size]`` forward pass (convs + linear)."""
    macs = 0

    def conv_hook(mod: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        k = mod.kernel_size[0] * mod.kernel_size[1]
        macs += out.numel() * k * mod.in_channels // mod.groups

    def linear_hook(mod: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        macs += mod.in_features * mod.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return macs


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``Conv2d → BatchNorm2d`` pair in place (eval mode); returns ``model``.

    The BatchNorm is removed, so the exported graph has no BatchNormalization (nor
    Identity) node, whatever the exporter does.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for module in model.modules():
        if isinstance(module, ConvBNReLU):
            conv, bn = module[0], module[1]
            if isinstance(bn, nn.BatchNorm2d):
                module[0] = fuse_conv_bn_eval(conv, bn)
                del module[1]
    return model
