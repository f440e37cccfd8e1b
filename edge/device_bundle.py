"""The device part of a bundle: what a board runs, without what only training reads.

A bundle as ``semedge train`` writes it holds fp32 and int8 models, the PyTorch
checkpoints ``semedge train --init`` fine-tunes from, ``splits.json`` and a ``report/``
folder. A board runs the int8 models (ONNX Runtime or TFLite) and nothing else, so the
device part keeps the int8 files and a manifest that lists only them; every kept file
is copied byte for byte and checked against the manifest's sha256.

The device build of the wheel (``SEMEDGE_WHEEL=device``, ``setup.py``) ships the default
bundle in this form, and ``semedge device-bundle`` makes it from any bundle. Only the
standard library is used here: ``setup.py`` loads this file by path, before anything is
built.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

__all__ = ["DEVICE_FORMATS", "WORKSTATION_KEYS", "DeviceBundleError", "device_file_paths",
           "device_manifest", "write_device_bundle"]

DEVICE_FORMATS: tuple[str, ...] = ("onnx-int8", "tflite-int8", "tflite-int8-full")
"""Format keys a board runs (fp32 ``onnx`` stays on the workstation and on GPU boxes)."""

WORKSTATION_KEYS: tuple[str, ...] = ("checkpoints", "splits")
"""Manifest keys naming files that only training reads (``--init``, re-splitting)."""


class DeviceBundleError(ValueError):
    """A bundle cannot be made into a device bundle; the message names the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def device_manifest(manifest: dict[str, Any], where: Path = Path("manifest.json")
                    ) -> dict[str, Any]:
    """``manifest`` with only the device formats under ``files`` and no workstation keys.

    ``device_build`` records what was left out. A stage with no device format is an
    error (``where`` names the manifest in it): the board could not run that stage.
    """
    out = copy.deepcopy(manifest)
    files = out.get("files")
    if not isinstance(files, dict):
        raise DeviceBundleError(where, "schema: files must be an object")
    dropped: set[str] = set()
    for stage, by_format in files.items():
        if not isinstance(by_format, dict):
            raise DeviceBundleError(where, f"schema: files.{stage} must be an object")
        kept = {fmt: entry for fmt, entry in by_format.items() if fmt in DEVICE_FORMATS}
        if not kept:
            raise DeviceBundleError(where, f"files.{stage} has no device format (has: "
                                    f"{', '.join(by_format) or 'none'}; a board runs "
                                    f"{', '.join(DEVICE_FORMATS)})")
        dropped.update(set(by_format) - set(kept))
        files[stage] = kept
    removed = [key for key in WORKSTATION_KEYS if out.pop(key, None) is not None]
    out["device_build"] = {"dropped_formats": sorted(dropped), "dropped_keys": removed}
    return out


def device_file_paths(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """``(relative path, sha256)`` of every file a device manifest lists, sorted."""
    return sorted({(entry["path"], entry["sha256"].lower())
                   for by_format in manifest["files"].values()
                   for entry in by_format.values()})


def write_device_bundle(src: Path, dst: Path) -> list[Path]:
    """Write the device part of bundle folder ``src`` into ``dst`` and return its files.

    ``dst`` must not exist or be an empty folder (nothing is overwritten). Each copied
    model is checked against the manifest's sha256; a mismatch or a missing file is a
    :class:`DeviceBundleError` naming it, and ``dst`` is then removed again.
    """
    src, dst = Path(src), Path(dst)
    manifest_path = src / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DeviceBundleError(manifest_path, f"cannot read the manifest ({err})") from None
    if not isinstance(manifest, dict):
        raise DeviceBundleError(manifest_path, "schema: the manifest must be a JSON object")
    slim = device_manifest(manifest, manifest_path)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DeviceBundleError(dst, "exists and is not an empty folder (nothing is "
                                     "overwritten)")
    created = not dst.exists()
    dst.mkdir(parents=True, exist_ok=True)
    try:
        written = [_copy_checked(src, dst, rel, digest)
                   for rel, digest in device_file_paths(slim)]
    except BaseException:
        if created:
            shutil.rmtree(dst, ignore_errors=True)
        raise
    out = dst / "manifest.json"
    out.write_text(json.dumps(slim, indent=1) + "\n", encoding="utf-8")
    return [*written, out]


def _copy_checked(src: Path, dst: Path, rel: str, digest: str) -> Path:
    source = src / rel
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise DeviceBundleError(source, "a manifest path must stay inside the bundle folder")
    if not source.is_file():
        raise DeviceBundleError(source, "missing: listed in the manifest")
    target = dst / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    actual = hashlib.sha256(target.read_bytes()).hexdigest()
    if actual != digest:
        raise DeviceBundleError(source, f"sha256 mismatch with the manifest ({actual[:12]}… "
                                        f"is not {digest[:12]}…)")
    return target
