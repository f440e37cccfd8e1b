"""The model folder: ``model.safetensors`` (sampling weights), ``train_state.pt`` (what a
resumed run needs) and ``config.json`` (architecture, labels, provenance and the SHA-256
of both files). Everything read is checked; a bad folder raises :class:`ModelFolderError`
naming the file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from synth.diffusion.config import (
    CONFIG_NAME,
    FORMAT,
    LABELS,
    NULL_CLASS,
    STATE_NAME,
    WEIGHTS_NAME,
    Architecture,
)


class ModelFolderError(ValueError):
    """A model folder that is missing, incomplete, tampered with or of another format."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _replace_atomically(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save(folder: str | Path, weights: dict[str, torch.Tensor], state: dict[str, Any],
         config: dict[str, Any]) -> dict[str, Any]:
    """Write the weights, the training state and, last, ``config.json`` with their hashes.

    ``config`` is completed with ``format``, ``labels``, ``null_class`` and the file names
    and hashes; the written config is returned. A folder whose config exists is complete.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _replace_atomically(folder / WEIGHTS_NAME, lambda p: save_file(
        {k: v.detach().contiguous() for k, v in weights.items()}, str(p)))
    _replace_atomically(folder / STATE_NAME, lambda p: torch.save(state, p))
    full = {"format": FORMAT, "engine": "diffusion", **config, "labels": list(LABELS),
            "null_class": NULL_CLASS,
            "weights": {"file": WEIGHTS_NAME, "sha256": file_sha256(folder / WEIGHTS_NAME)},
            "train_state": {"file": STATE_NAME, "sha256": file_sha256(folder / STATE_NAME)}}
    text = json.dumps(full, indent=2, sort_keys=True) + "\n"
    _replace_atomically(folder / CONFIG_NAME, lambda p: p.write_text(text, encoding="utf-8"))
    return full


def read_config(folder: str | Path) -> dict[str, Any]:
    """Parse and check ``config.json`` (format, labels, architecture); no weights read."""
    path = Path(folder) / CONFIG_NAME
    if not Path(folder).is_dir():
        raise ModelFolderError(f"{folder}: no such model folder")
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing (not a model folder written by "
                               "'semedge synth-train')")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFolderError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ModelFolderError(f"{path}: format is {got!r}, expected {FORMAT!r}")
    if config.get("labels") != list(LABELS) or config.get("null_class") != NULL_CLASS:
        raise ModelFolderError(f"{path}: labels {config.get('labels')!r} (null class "
                               f"{config.get('null_class')!r}) do not match this version's "
                               f"{list(LABELS)} (null class {NULL_CLASS})")
    try:
        config["architecture"] = Architecture.from_json(config.get("architecture"))
    except ValueError as exc:
        raise ModelFolderError(f"{path}: {exc}") from None
    for key, name in (("weights", WEIGHTS_NAME), ("train_state", STATE_NAME)):
        entry = config.get(key)
        if (not isinstance(entry, dict) or entry.get("file") != name
                or not isinstance(entry.get("sha256"), str) or len(entry["sha256"]) != 64):
            raise ModelFolderError(f"{path}: '{key}' must name {name} and its sha256")
    if not isinstance(config.get("steps_trained"), int) or config["steps_trained"] < 0:
        raise ModelFolderError(f"{path}: 'steps_trained' must be an integer >= 0")
    data, training = config.get("data"), config.get("training")
    if (not isinstance(data, dict) or not isinstance(data.get("sha256"), str)
            or not isinstance(data.get("per_label"), dict)):
        raise ModelFolderError(f"{path}: 'data' must record the training data's sha256 "
                               "and per_label counts")
    if not isinstance(training, dict) or not isinstance(training.get("runs"), list):
        raise ModelFolderError(f"{path}: 'training' must list its runs")
    return config


def _checked(folder: Path, config: dict[str, Any], key: str) -> Path:
    path = folder / config[key]["file"]
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing (named in {folder / CONFIG_NAME})")
    digest = file_sha256(path)
    if digest != config[key]["sha256"]:
        raise ModelFolderError(f"{path}: sha256 {digest[:12]}… does not match "
                               f"{config[key]['sha256'][:12]}… in {folder / CONFIG_NAME} "
                               "(changed or truncated)")
    return path


def load_weights(folder: str | Path, config: dict[str, Any] | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The checked sampling weights and the config."""
    folder = Path(folder)
    config = config if config is not None else read_config(folder)
    path = _checked(folder, config, "weights")
    try:
        return load_file(str(path)), config
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise ModelFolderError(f"{path}: unreadable weights ({exc})") from None


def load_state(folder: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """The checked training state (``torch.load(weights_only=True)``)."""
    path = _checked(Path(folder), config, "train_state")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle / zip errors of many types
        raise ModelFolderError(f"{path}: unreadable training state ({exc})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "step"} <= set(state):
        raise ModelFolderError(f"{path}: not a training state (model, optimizer, step)")
    return state


def load_model(folder: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The checked sampling network (eval mode) and its config."""
    from synth.diffusion.model import build_unet

    weights, config = load_weights(folder)
    model = build_unet(config["architecture"])
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelFolderError(f"{Path(folder) / WEIGHTS_NAME}: weights do not fit the "
                               f"architecture in {CONFIG_NAME} ({first})") from None
    return model.eval(), config
