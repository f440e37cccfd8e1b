"""Model bundle loading and verification (the contract in ``docs/bundle.md``).

A bundle is a folder with ``manifest.json`` and the stage files it lists. ``load_bundle``
checks the manifest's schema, the class list, every listed file's presence and sha256,
and refuses anything that does not match with a :class:`BundleError` naming the file and
the reason. The model files themselves are opened later, by a backend, which also checks
their input and output shapes against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from edge.classes import CLASSES, DEFECT_CLASSES

__all__ = [
    "FORMATS",
    "FORMAT_VERSION",
    "STAGES",
    "Bundle",
    "BundleError",
    "StageFile",
    "default_bundle_path",
    "load_bundle",
    "sha256_file",
]

PathLike = Union[str, "os.PathLike[str]"]

FORMAT_VERSION = 1
"""The manifest ``format_version`` this runtime reads."""

FORMATS: dict[str, str] = {
    "onnx": "onnx-fp32",
    "onnx-int8": "onnx-int8",
    "tflite-int8": "tflite-int8",
    "tflite-int8-full": "tflite-int8-full",
}
"""Format key in ``files`` → the ``format`` value its entry must carry."""

STAGES: dict[str, int] = {"stage1": 1, "stage2": len(DEFECT_CLASSES), "monolithic": len(CLASSES)}
"""Stage name → number of output logits per tile."""

REQUIRED_STAGES = ("stage1",)
"""Every bundle has stage 1; one without stage 2 is a binary (stage-1-only) bundle."""

LARGE_IMAGE_RULES = ("tile", "resize")
"""``preprocess.large_image`` values: what the edge does with an image larger than a tile."""


class BundleError(ValueError):
    """A bundle that does not match the contract; names the offending file and why."""

    def __init__(self, file: PathLike, reason: str) -> None:
        self.file = str(file)
        self.reason = reason
        super().__init__(f"{self.file}: {reason}")


@dataclass(frozen=True)
class StageFile:
    """One model file of a bundle: ``stage`` (``stage1``…), format key, path and hash."""

    stage: str
    format: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class Bundle:
    """A verified model bundle.

    Attributes
    ----------
    root : Path
        The bundle folder.
    name : str
        ``manifest["name"]``.
    input_size : int
        Tile side ``S`` the models take (``[N, 1, S, S]``).
    low, high : float
        Percentile clip of the preprocessing.
    stage1_threshold, stage1_target_recall : float
        Stage-1 score at or above which a tile goes to stage 2, and the recall it was
        chosen for.
    temperature, unknown_threshold : float
        Stage-2 calibration and the top-probability floor under which a tile is
        ``unknown``.
    other_output : bool
        ``stage2.other_output``: stage 2 has a seventh output, "outside the six
        classes", trained on ``other_defect`` images; a tile it wins is ``unknown``.
    files : dict
        ``stage -> format key -> StageFile``.
    metrics : dict
        Metrics measured at export, as written by training.
    large_image : {"tile", "resize"}
        ``preprocess.large_image``: an image larger than a tile is tiled at its own
        resolution (``tile``, the default) or first resized so that its shorter side
        equals the tile (``resize``: the models were trained on images downscaled so).
    manifest : dict
        The full parsed manifest.
    """

    root: Path
    name: str
    input_size: int
    low: float
    high: float
    stage1_threshold: float
    stage1_target_recall: float
    temperature: float
    unknown_threshold: float
    files: dict[str, dict[str, StageFile]]
    metrics: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False)
    large_image: str = "tile"
    other_output: bool = False

    @property
    def stage2_outputs(self) -> int:
        """Width of stage 2's output: the six classes, and the other output if any."""
        return STAGES["stage2"] + int(self.other_output)

    @property
    def binary(self) -> bool:
        """A stage-1-only bundle: flagged tiles are ``defective``, no class is named."""
        return "stage2" not in self.files

    def formats(self, stage: str) -> tuple[str, ...]:
        """Format keys the bundle has for ``stage`` (empty if the stage is absent)."""
        return tuple(self.files.get(stage, {}))

    def file(self, stage: str, fmt: str) -> StageFile:
        """The file of ``stage`` in format ``fmt``; ``BundleError`` if the bundle lacks it."""
        try:
            return self.files[stage][fmt]
        except KeyError:
            dropped = self.manifest.get("device_build", {}).get("dropped_formats", [])
            hint = ("; this is a device bundle: the full bundle (or the full build of "
                    "semedge) has it" if fmt in dropped else "")
            raise BundleError(
                self.root / "manifest.json",
                f"no {stage!r} model in format {fmt!r} (the bundle has: "
                f"{', '.join(self.formats(stage)) or 'none'}){hint}",
            ) from None


def default_bundle_path() -> Path:
    """Where the default bundle ships: ``edge/models/default/``."""
    return Path(__file__).resolve().parent / "models" / "default"


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_bundle(path: PathLike | None = None, *, verify_hashes: bool = True) -> Bundle:
    """Read and verify the bundle in folder ``path`` (``None``: the shipped default).

    Raises
    ------
    BundleError
        Missing folder or manifest, invalid JSON or schema, a class list that is not
        ``docs/classes.md`` order, a listed file that is missing, outside the bundle, or whose
        sha256 differs. The message names the file and the reason.
    """
    if path is None:
        root = default_bundle_path()
        if not (root / "manifest.json").is_file():
            raise BundleError(
                root,
                "the default bundle is not installed in this semedge package; pass a "
                "bundle folder (edge.load(bundle=DIR) or `semedge classify --bundle DIR`)",
            )
    else:
        root = Path(path)
    if not root.is_dir():
        raise BundleError(root, "is a file, not a bundle folder" if root.exists()
                          else "bundle folder does not exist")
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(manifest_path, _not_a_file(manifest_path) or
                          "missing: a bundle folder must hold manifest.json")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(manifest_path, f"not valid JSON ({err})") from None
    bundle = _parse(root, manifest_path, manifest)
    for stage_files in bundle.files.values():
        for entry in stage_files.values():
            _check_file(entry, verify_hashes)
    return bundle


# --------------------------------------------------------------------------- schema


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str, mf: Path) -> Any:
    if not isinstance(obj, dict):
        raise BundleError(mf, f"schema: {where or 'the manifest'} must be an object")
    if key not in obj:
        raise BundleError(mf, f"schema: missing key {_key(where, key)}")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        value = None  # JSON true/false is not a number here
    if not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise BundleError(mf, f"schema: {_key(where, key)} must be {names}, got {obj[key]!r}")
    return value


def _flag(obj: dict[str, Any], key: str, where: str, mf: Path) -> bool:
    """An optional boolean ``obj[key]`` (absent: False)."""
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise BundleError(mf, f"schema: {where}.{key} must be true or false, "
                              f"got {value!r}")
    return value


def _number(obj: dict[str, Any], key: str, where: str, mf: Path, lo: float, hi: float,
            *, open_low: bool = False) -> float:
    value = float(_get(obj, key, (int, float), where, mf))
    ok = math.isfinite(value) and (lo < value if open_low else lo <= value) and value <= hi
    if not ok:
        raise BundleError(mf, f"schema: {_key(where, key)} must be {_range(lo, hi, open_low)}, "
                              f"got {value!r}")
    return value


def _range(lo: float, hi: float, open_low: bool) -> str:
    """The accepted range in words: ``in [0.0, 1.0]``, or ``a finite number > 0.0``."""
    if math.isinf(hi):
        return f"a finite number {'>' if open_low else '>='} {lo}"
    return f"in {'(' if open_low else '['}{lo}, {hi}]"


def _parse(root: Path, mf: Path, manifest: Any) -> Bundle:
    if not isinstance(manifest, dict):
        raise BundleError(mf, "schema: the manifest must be a JSON object")
    version = _get(manifest, "format_version", int, "", mf)
    if version != FORMAT_VERSION:
        raise BundleError(mf, f"format_version {version} is not supported (this runtime "
                              f"reads {FORMAT_VERSION})")
    name = _get(manifest, "name", str, "", mf)
    classes = _get(manifest, "classes", list, "", mf)
    if classes != list(CLASSES):
        raise BundleError(mf, f"class list {classes} does not match docs/classes.md order "
                              f"{list(CLASSES)}")
    inp = _get(manifest, "input", dict, "", mf)
    size = _get(inp, "size", int, "input", mf)
    if size <= 0:
        raise BundleError(mf, f"schema: input.size must be > 0, got {size}")
    for key, want in (("channels", 1), ("layout", "NCHW"), ("dtype", "float32")):
        got = inp.get(key, want)
        if got != want:
            raise BundleError(mf, f"input.{key} must be {want!r}, got {got!r}")
    pre = _get(manifest, "preprocess", dict, "", mf)
    low = _number(pre, "low", "preprocess", mf, 0.0, 100.0)
    high = _number(pre, "high", "preprocess", mf, 0.0, 100.0)
    if low >= high:
        raise BundleError(mf, f"preprocess.low ({low}) must be below preprocess.high ({high})")
    small = pre.get("small_image", "upscale")
    if small != "upscale":
        raise BundleError(mf, f"preprocess.small_image {small!r} is not supported ('upscale')")
    large = pre.get("large_image", "tile")
    if large not in LARGE_IMAGE_RULES:
        raise BundleError(mf, f"preprocess.large_image {large!r} is not supported "
                              f"({', '.join(map(repr, LARGE_IMAGE_RULES))})")
    s1 = _get(manifest, "stage1", dict, "", mf)
    files = _parse_files(root, mf, _get(manifest, "files", dict, "", mf))
    # a stage-1-only bundle has neither a stage-2 model nor a stage2 block
    if "stage2" in manifest and "stage2" not in files:
        raise BundleError(mf, "schema: files.stage2 is required (the manifest has a stage2 "
                              "block; a stage-1-only bundle has neither)")
    s2 = (_get(manifest, "stage2", dict, "", mf) if "stage2" in files
          else {"temperature": 1.0, "unknown_threshold": 0.0})
    metrics = _get(manifest, "metrics", dict, "", mf)
    return Bundle(
        root=root,
        name=name,
        input_size=size,
        low=low,
        high=high,
        stage1_threshold=_number(s1, "threshold", "stage1", mf, 0.0, 1.0),
        stage1_target_recall=_number(s1, "target_recall", "stage1", mf, 0.0, 1.0, open_low=True),
        temperature=_number(s2, "temperature", "stage2", mf, 0.0, math.inf, open_low=True),
        unknown_threshold=_number(s2, "unknown_threshold", "stage2", mf, 0.0, 1.0),
        files=files,
        metrics=metrics,
        manifest=manifest,
        large_image=large,
        other_output=_flag(s2, "other_output", "stage2", mf),
    )


def _parse_files(root: Path, mf: Path, files: dict[str, Any]) -> dict[str, dict[str, StageFile]]:
    for stage in REQUIRED_STAGES:
        if stage not in files:
            raise BundleError(mf, f"schema: files.{stage} is required")
    out: dict[str, dict[str, StageFile]] = {}
    resolved_root = root.resolve()
    for stage, by_format in files.items():
        if stage not in STAGES:
            raise BundleError(mf, f"schema: unknown stage files.{stage} (known: "
                                  f"{', '.join(STAGES)})")
        if not isinstance(by_format, dict) or not by_format:
            raise BundleError(mf, f"schema: files.{stage} must be a non-empty object")
        out[stage] = {}
        for fmt, entry in by_format.items():
            where = f"files.{stage}.{fmt}"
            if fmt not in FORMATS:
                raise BundleError(mf, f"schema: unknown format key {where} (known: "
                                      f"{', '.join(FORMATS)})")
            rel = _get(entry, "path", str, where, mf)
            digest = _get(entry, "sha256", str, where, mf).lower()
            declared = _get(entry, "format", str, where, mf)
            if declared != FORMATS[fmt]:
                raise BundleError(mf, f"{where}.format is {declared!r}, expected "
                                      f"{FORMATS[fmt]!r}")
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise BundleError(mf, f"{where}.sha256 is not a hex sha256: {digest!r}")
            file_path = _stage_path(root, resolved_root, rel, where, mf)
            out[stage][fmt] = StageFile(stage=stage, format=fmt, path=file_path, sha256=digest)
    return out


def _stage_path(root: Path, resolved_root: Path, rel: str, where: str, mf: Path) -> Path:
    """``root / rel`` for a manifest ``path`` value; it must name a file inside the bundle."""
    if not rel or "\0" in rel:
        raise BundleError(mf, f"schema: {where}.path must be a file name, got {rel!r}")
    file_path = root / rel
    try:
        inside = not Path(rel).is_absolute() and file_path.resolve().is_relative_to(resolved_root)
    except (OSError, ValueError) as err:  # a name too long, a link loop
        raise BundleError(file_path, f"{where}.path cannot be used: {err}") from None
    if not inside:
        raise BundleError(file_path, f"{where}.path must stay inside the bundle folder")
    return file_path


def _not_a_file(path: Path) -> str | None:
    """Why an existing ``path`` is not a regular file (None when missing or a file)."""
    if path.is_dir():
        return "is a folder, not a file"
    if path.exists() and not path.is_file():
        return "not a regular file"
    return None


def _check_file(entry: StageFile, verify_hash: bool) -> None:
    try:
        _check_file_unguarded(entry, verify_hash)
    except OSError as err:  # a name too long, unreadable, a link loop
        raise BundleError(entry.path, f"cannot read: {err.strerror or err}") from None


def _check_file_unguarded(entry: StageFile, verify_hash: bool) -> None:
    if not entry.path.is_file():
        what = f"listed in the manifest as the {entry.stage} {entry.format} model"
        raise BundleError(entry.path, f"{_not_a_file(entry.path) or 'missing'}: {what}")
    if verify_hash:
        actual = sha256_file(entry.path)
        if actual != entry.sha256:
            raise BundleError(entry.path, f"sha256 mismatch (manifest {entry.sha256[:12]}…, "
                                          f"file {actual[:12]}…): the file was modified or "
                                          "belongs to another bundle")
