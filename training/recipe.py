"""The training recipe: every knob of ``semedge train`` in one TOML file.

All keys are optional; missing ones take the defaults below (the ones the default bundle
is built with). Example::

    seed = 0
    size = 224
    [split]
    val = 0.15            # validation: threshold, temperature, unknown threshold
    test = 0.15           # internal held-out set (used when no --eval set is given)
    calibration_per_class = 48
    [stage1]
    epochs = 8
    samples_per_epoch = 4096
    lr = 0.004
    target_recall = 0.995
    [stage2]
    epochs = 8
    ...
    [monolithic]
    ...
    [stage2.augment]      # a model's own overrides of [augment]
    p_invert = 0.0
    [augment]
    p_invert = 0.3
    # top level also: target_recall, unknown_coverage, max_recall_drop, max_macro_f1_drop…
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from training.augment import AugmentConfig

__all__ = ["ModelRecipe", "TrainRecipe", "load_recipe"]


@dataclass(frozen=True)
class ModelRecipe:
    """Training knobs of one model."""

    epochs: int = 8
    samples_per_epoch: int | None = None
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    dense_weight: float = 1.0  # the dense cell head's loss weight (models with one; 0: off)
    crop: int = 0  # train the first crop_share of the steps on crop-px windows (0: off)
    crop_share: float = 0.0
    outlier_weight: float = 0.0  # stage 2: train on other_defect with a uniform target (0: off)
    other_output: bool = False  # stage 2: a 7th output trained on other_defect, read as unknown
    patience: int = 0  # stop after this many epochs without a better val score (0: off)
    augment: dict = field(default_factory=dict)  # this model's overrides of [augment]


@dataclass(frozen=True)
class TrainRecipe:
    """Everything ``semedge train`` needs besides the data."""

    seed: int = 0
    size: int = 224
    low: float = 1.0
    high: float = 99.0
    threads: int = 2
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    calibration_per_class: int = 48
    target_recall: float = 0.995
    recall_confidence: float = 0.95
    unknown_coverage: float = 0.98
    unknown_max_threshold: float = 0.9
    calibration_method: str = "minmax"
    max_recall_drop: float = 0.005  # int8 vs fp32 stage-1 recall (0.5 point)
    max_macro_f1_drop: float = 0.01  # int8 vs fp32 stage-2 macro-F1 (1 point)
    timing_seconds: float = 1.0  # minimum timed run per ONNX model (cost per tile)
    stage1: ModelRecipe = field(default_factory=lambda: ModelRecipe(
        epochs=8, lr=4e-3, label_smoothing=0.0))
    stage2: ModelRecipe = field(default_factory=lambda: ModelRecipe(epochs=8, lr=3e-3))
    monolithic: ModelRecipe = field(default_factory=lambda: ModelRecipe(epochs=8, lr=3e-3))
    train_monolithic: bool = True
    concurrent_stage1: bool = False  # stage 1 in its own thread beside stage 2 (2 cores)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        """The recipe as plain dicts (for JSON and hashing)."""
        return asdict(self)

    def sha256(self) -> str:
        """Hash of the resolved recipe (what was actually used)."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def with_overrides(self, **kwargs) -> TrainRecipe:
        """A copy with top-level fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in kwargs.items() if v is not None})

    def with_epochs(self, epochs: int | None) -> TrainRecipe:
        """A copy with every model's epoch count set to ``epochs`` (``None``: unchanged)."""
        if epochs is None:
            return self
        return replace(self, stage1=replace(self.stage1, epochs=epochs),
                       stage2=replace(self.stage2, epochs=epochs),
                       monolithic=replace(self.monolithic, epochs=epochs))


_SPLIT_KEYS = {"val": "val_fraction", "test": "test_fraction",
               "calibration_per_class": "calibration_per_class"}


def load_recipe(path: str | Path | None) -> TrainRecipe:
    """Read a training recipe TOML (``None``: the defaults); unknown keys are errors."""
    base = TrainRecipe()
    if path is None:
        return base
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{path}: cannot read training recipe ({err})") from None
    top: dict = {}
    for key, value in data.items():
        if key in ("stage1", "stage2", "monolithic"):
            _check_keys(path, key, value, ModelRecipe)
            try:
                AugmentConfig().with_overrides(value.get("augment", {}))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}: [{key}.augment]: {err}") from None
            top[key] = replace(getattr(base, key), **value)
        elif key == "augment":
            top[key] = AugmentConfig.from_dict(value)
        elif key == "split":
            for k, v in value.items():
                if k not in _SPLIT_KEYS:
                    raise ValueError(f"{path}: unknown key split.{k} (known: "
                                     f"{', '.join(_SPLIT_KEYS)})")
                top[_SPLIT_KEYS[k]] = v
        elif key in TrainRecipe.__dataclass_fields__:
            top[key] = value
        else:
            raise ValueError(f"{path}: unknown training-recipe key {key!r}")
    return replace(base, **top)


def _check_keys(path: Path, table: str, value: object, cls: type) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{path}: [{table}] must be a table")
    unknown = set(value) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"{path}: unknown keys in [{table}]: {sorted(unknown)} (known: "
                         f"{sorted(cls.__dataclass_fields__)})")
