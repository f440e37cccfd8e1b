"""Target profiles (``targets/*.toml``) and ``target="auto"`` detection.

A profile is data: the backend and model formats to use (with an optional, explicit
fallback), execution providers in priority order, threads, tile/stride/batch and an
optional stage-1 threshold override. Profiles ship in the wheel as ``edge/targets/``;
in a source checkout they are read from ``<repo>/targets/``.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from edge import backends

__all__ = [
    "Detection",
    "Profile",
    "Runtime",
    "detect",
    "list_profiles",
    "load_profile",
    "profile_dirs",
]

PathLike = Union[str, "os.PathLike[str]"]

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
USB_DEVICES = Path("/sys/bus/usb/devices")


@dataclass(frozen=True)
class Runtime:
    """Backend, model formats (preference order) and execution providers."""

    backend: str
    formats: tuple[str, ...]
    providers: tuple[str, ...] = ()
    optional_providers: tuple[str, ...] = ()

    def options(self, threads: int) -> dict[str, Any]:
        """Keyword options for :func:`edge.backends.create_backend`."""
        opts: dict[str, Any] = {"threads": threads}
        if self.providers:
            opts["providers"] = self.providers
            opts["optional_providers"] = self.optional_providers
        return opts

    def why_not(self, threads: int = 1) -> str | None:
        """``None`` if this runtime can run here, else why (and what to install)."""
        return backends.why_unavailable(self.backend, **self.options(threads))


@dataclass(frozen=True)
class Match:
    """Auto-detection rules of a profile."""

    device_tree: tuple[str, ...] = ()
    usb_ids: tuple[str, ...] = ()
    machine: tuple[str, ...] = ()
    generic: bool = False


@dataclass(frozen=True)
class Profile:
    """One target board.

    Attributes
    ----------
    name, description : str
    runtime : Runtime
        What to run with.
    fallback : Runtime or None
        Used only when ``runtime`` cannot run here and the profile says so.
    threads : int
        Intra-op threads of each session and threads of the tiling kernel
        (0: every CPU this process may use).
    tile : int or None
        Tile side; must equal the bundle's input size (None: the bundle's).
    stride : int or None
        Tiling step (None: the tile side, no overlap).
    batch : int
        Tiles per inference call.
    stage1_threshold : float or None
        Overrides the bundle's stage-1 threshold on this board.
    """

    name: str
    description: str
    runtime: Runtime
    fallback: Runtime | None
    threads: int
    tile: int | None
    stride: int | None
    batch: int
    stage1_threshold: float | None
    match: Match = field(default_factory=Match)
    source: Path | None = None

    def resolved_threads(self) -> int:
        """``threads``, with 0 replaced by the number of CPUs this process may use."""
        if self.threads > 0:
            return self.threads
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover (macOS, Windows)
            return max(1, os.cpu_count() or 1)

    def choose_runtime(self) -> tuple[Runtime, str | None]:
        """The runtime to use here and a note if it is the fallback.

        Raises
        ------
        backends.BackendUnavailable, backends.ProviderError
            Neither the runtime nor an explicit fallback can run (backend or a required
            provider missing); the message says what to install.
        """
        threads = self.resolved_threads()
        reason = self.runtime.why_not(threads)
        if reason is None:
            return self.runtime, None
        if self.fallback is not None and self.fallback.why_not(threads) is None:
            return self.fallback, (f"{reason}; using the profile's fallback "
                                   f"{self.fallback.backend} {'/'.join(self.fallback.formats)}")
        error = (backends.ProviderError if backends.is_available(self.runtime.backend)
                 else backends.BackendUnavailable)
        raise error(f"target {self.name!r}: {reason}")

    def why_not_runnable(self) -> str | None:
        """``None`` if this profile can run here, else why."""
        try:
            self.choose_runtime()
        except (backends.BackendUnavailable, backends.ProviderError, ValueError) as err:
            return str(err)
        return None


def profile_dirs() -> list[Path]:
    """Folders searched for profiles: ``edge/targets/`` (wheel), then ``<repo>/targets/``."""
    here = Path(__file__).resolve().parent
    return [d for d in (here / "targets", here.parent / "targets") if d.is_dir()]


def list_profiles() -> list[Profile]:
    """All shipped profiles, by name (a wheel's copy wins over a checkout's)."""
    found: dict[str, Profile] = {}
    for folder in profile_dirs():
        for path in sorted(folder.glob("*.toml")):
            found.setdefault(path.stem, _read(path))
    return [found[name] for name in sorted(found)]


def load_profile(name_or_path: PathLike) -> Profile:
    """A shipped profile by name (``"rpi5"``) or a TOML file by path.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones) or an invalid file.
    """
    text = str(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"target profile file {path} does not exist")
        return _read(path)
    for folder in profile_dirs():
        path = folder / f"{text}.toml"
        if path.is_file():
            return _read(path)
    known = ", ".join(p.name for p in list_profiles()) or "none found"
    raise ValueError(f"unknown target {text!r}; known targets: {known}")


def _strings(raw: dict[str, Any], key: str, path: Path) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{path}: {key} must be a list of strings, got {value!r}")
    return tuple(value)


def _runtime(raw: dict[str, Any], path: Path) -> Runtime:
    backend = raw.get("backend")
    if not isinstance(backend, str):
        raise ValueError(f"{path}: backend must be a string, got {backend!r}")
    spec = backends.backend_spec(backend)
    formats = _strings(raw, "formats", path)
    bad = [f for f in formats if f not in spec.formats]
    if not formats or bad:
        raise ValueError(f"{path}: formats {list(formats)} must be a non-empty subset of "
                         f"{list(spec.formats)} for backend {backend!r}")
    providers = _strings(raw, "providers", path)
    optional = _strings(raw, "optional_providers", path)
    if set(optional) - set(providers):
        raise ValueError(f"{path}: optional_providers must also be listed in providers")
    return Runtime(backend, formats, providers, optional)


def _positive(raw: dict[str, Any], key: str, path: Path, default: int | None, *,
              zero_ok: bool = False) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if zero_ok else 1):
        raise ValueError(f"{path}: {key} must be an integer {'>= 0' if zero_ok else '> 0'}, "
                         f"got {value!r}")
    return value


def _count(raw: dict[str, Any], key: str, path: Path, default: int, *,
           zero_ok: bool = False) -> int:
    """:func:`_positive` with a default, so never None."""
    value = _positive(raw, key, path, default, zero_ok=zero_ok)
    return default if value is None else value


def _read(path: Path) -> Profile:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{path}: cannot read target profile ({err})") from None
    threshold = raw.get("stage1_threshold")
    if threshold is not None and (not isinstance(threshold, (int, float))
                                  or not 0.0 <= threshold <= 1.0):
        raise ValueError(f"{path}: stage1_threshold must be in [0, 1], got {threshold!r}")
    match = raw.get("match", {})
    return Profile(
        name=raw.get("name", path.stem),
        description=raw.get("description", ""),
        runtime=_runtime(raw, path),
        fallback=_runtime(raw["fallback"], path) if "fallback" in raw else None,
        threads=_count(raw, "threads", path, 0, zero_ok=True),
        tile=_positive(raw, "tile", path, None),
        stride=_positive(raw, "stride", path, None),
        batch=_count(raw, "batch", path, 16),
        stage1_threshold=None if threshold is None else float(threshold),
        match=Match(
            device_tree=_strings(match, "device_tree", path),
            usb_ids=_strings(match, "usb_ids", path),
            machine=_strings(match, "machine", path),
            generic=bool(match.get("generic", False)),
        ),
        source=path,
    )


# --------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class Detection:
    """What ``target="auto"`` chose and why."""

    profile: Profile
    reason: str


def _read_model(path: Path) -> str:
    try:
        return path.read_bytes().rstrip(b"\0\n").decode("utf-8", "replace")
    except OSError:
        return ""


def _usb_ids(root: Path) -> set[str]:
    ids = set()
    if root.is_dir():
        for dev in root.iterdir():
            try:
                vendor = (dev / "idVendor").read_text().strip()
                product = (dev / "idProduct").read_text().strip()
            except OSError:
                continue
            ids.add(f"{vendor}:{product}".lower())
    return ids


def detect(profiles: Sequence[Profile] | None = None, *, model: str | None = None,
           machine: str | None = None, usb_ids: set[str] | None = None) -> Detection:
    """Pick the profile for this machine.

    Order: a board named in ``/proc/device-tree/model``, then a USB accelerator, then
    the CPU architecture, then the generic CPU profile. A candidate whose backend cannot
    run here is skipped (the reason says so). ``model``, ``machine`` and ``usb_ids``
    override what is read from the system (for tests).

    Raises
    ------
    ValueError
        No profile can run here (the message gives each candidate's reason).
    """
    profiles = list_profiles() if profiles is None else list(profiles)
    model = _read_model(DEVICE_TREE_MODEL) if model is None else model
    machine = (platform.machine() if machine is None else machine).lower()
    usb = _usb_ids(USB_DEVICES) if usb_ids is None else {u.lower() for u in usb_ids}
    candidates: list[tuple[Profile, str]] = []
    for p in profiles:
        hit = next((s for s in p.match.device_tree if s.lower() in model.lower()), None)
        if model and hit:
            candidates.append((p, f"device-tree model {model!r} matches {hit!r}"))
    for p in profiles:
        hit = next((u for u in p.match.usb_ids if u.lower() in usb), None)
        if hit:
            candidates.append((p, f"USB device {hit} present"))
    for p in profiles:
        if machine in (m.lower() for m in p.match.machine):
            candidates.append((p, f"CPU architecture {machine}"))
    for p in profiles:
        if p.match.generic:
            candidates.append((p, "no board matched; generic CPU profile"))
    skipped: list[str] = []
    for profile, why in candidates:
        problem = profile.why_not_runnable()
        if problem is None:
            note = "; ".join(f"skipped {s}" for s in skipped)
            return Detection(profile, f"{why}{' (' + note + ')' if note else ''}")
        skipped.append(f"{profile.name}: {problem}")
    details = "; ".join(skipped) or "no profile matches this machine"
    raise ValueError(f"target auto: no profile can run here ({details}); pass --target")
