"""Image files on disk: which suffixes count as images, the shipped samples, and the walk
that turns named files and folders into the list of files to read.

The command line (``classify``) and the evaluation (``eval``) both read folders through
this module, so both pick up the same files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "Inputs", "collect_files", "collect_inputs", "samples_dir"]

IMAGE_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".pgm", ".pnm"})
"""Files picked up when a folder is given (named files are taken whatever the suffix)."""


def samples_dir() -> Path:
    """The sample SEM images shipped in the package (``edge/samples``, see samples.json)."""
    return Path(__file__).with_name("samples")


@dataclass
class Inputs:
    """What ``classify`` will read: every entry, in order, and what is known up front.

    Attributes
    ----------
    files : list of Path
        Named files as given, then per named folder every entry that looks like an image
        (by suffix; also broken links and link loops so named) and every folder that
        could not be read, in sorted order, depth first.
    problems : dict
        ``path -> reason`` for the entries in ``files`` that get an error record without
        being read: a symbolic link that leads back into a folder it lies in (a loop), a
        folder that cannot be listed.
    notes : list of str
        Lines for stderr: a folder reached a second time through a symbolic link (its
        images are read once, under the first path).
    """

    files: list[Path] = field(default_factory=list)
    problems: dict[Path, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def collect_inputs(paths: Sequence[str]) -> Inputs:
    """Walk the named paths (see :class:`Inputs`). Symbolic links to folders are followed;
    each real folder is read once per named path, and a link back into a folder being
    read is a loop, reported, not followed."""
    inputs = Inputs()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            key = _folder_key(path)
            _walk(path, inputs, (key,), {key: path})
        else:
            inputs.files.append(path)  # a missing file becomes an error result
    return inputs


def collect_files(paths: Sequence[str]) -> Iterator[Path]:
    """Named files as given, image files under named folders (recursive, sorted)."""
    yield from collect_inputs(paths).files


def _folder_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _walk(folder: Path, inputs: Inputs, ancestors: tuple[tuple[int, int], ...],
          seen: dict[tuple[int, int], Path]) -> None:
    """Append ``folder``'s image entries to ``inputs``, recursing into sub-folders."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as err:
        inputs.files.append(folder)
        inputs.problems[folder] = f"cannot list the folder: {err.strerror or err}"
        return
    for entry in entries:
        path = Path(entry.path)
        if not _entry_is_dir(entry):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                inputs.files.append(path)  # also a broken link: read_image says so
            continue
        key = _folder_key(path)
        if key in ancestors:
            inputs.files.append(path)
            inputs.problems[path] = (f"symbolic link loop: leads back to {seen[key]}, "
                                     "which contains it; not followed")
        elif key in seen:
            inputs.notes.append(f"{path}: the folder {seen[key]} again (symbolic link); "
                                "its images are read once, under the first path")
        else:
            seen[key] = path
            _walk(path, inputs, (*ancestors, key), seen)


def _entry_is_dir(entry: os.DirEntry[str]) -> bool:
    """True for a folder or a link to one (a broken link or a link loop is not)."""
    try:
        return entry.is_dir()
    except OSError:
        return False
