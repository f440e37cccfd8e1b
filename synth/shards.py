"""Sharded synthesis: shard ``K`` of ``N`` of a ``write_dataset`` run, and the merge.

A run enumerates its images label-major (``(label, i)`` for every label of the recipe, then
``i`` in ``0..per_class-1``), as ``write_dataset`` always has; shard ``K`` of ``N`` renders
the images whose position ``t`` in that list has ``t % N == K``, and the fields ``k`` with
``k % N == K``. Interleaving (rather than contiguous blocks) gives every shard the same mix
of labels, hence about the same work (render cost differs by label and pattern family),
and no two shards differ by more than one image.

A shard writes its images where the single run would, and its bookkeeping under
``OUT/shards/``: ``shard-K-of-N.manifest.jsonl`` (its manifest lines, in run order),
``shard-K-of-N.fields.jsonl`` (with fields) and, last, ``shard-K-of-N.json`` (the run's
parameters; its presence means the shard finished). It never writes ``OUT/manifest.jsonl``,
so an unmerged folder is never mistaken for a dataset. Shards may share one folder or use
one each; :func:`merge_shards` checks they belong to one run, that each shard is there once
and none is missing, that every image's bytes match its manifest line, and writes the
single run's ``manifest.jsonl`` byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ShardError", "check_shard", "merge_shards", "parse_shard", "take_shard"]

SHARDS_DIR = "shards"
AGREE = ("shards", "recipe", "recipe_hash", "seed", "per_class", "size", "labels", "fields")
_INFO = re.compile(r"^shard-(\d+)-of-(\d+)\.json$")
T = TypeVar("T")


class ShardError(ValueError):
    """Shards that cannot be written or merged (the message names the problem)."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → ``(K, N)``, validated (``--shard``)."""
    k, sep, n = str(text).partition("/")
    try:
        if not sep:
            raise ValueError
        return check_shard((int(k), int(n)))
    except ValueError:
        raise ShardError(f"--shard must be K/N with integers 0 <= K < N, got {text!r}") from None


def check_shard(shard: Any) -> tuple[int, int]:
    """``(K, N)`` with ``N >= 1`` and ``0 <= K < N``; anything else raises :class:`ShardError`."""
    ok = (isinstance(shard, (tuple, list)) and len(shard) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in shard))
    if not ok or shard[1] < 1 or not 0 <= shard[0] < shard[1]:
        raise ShardError(f"shard must be (K, N) with integers N >= 1 and 0 <= K < N "
                         f"(K/N on the command line), got {shard!r}")
    return int(shard[0]), int(shard[1])


def take_shard(items: Sequence[T], shard: tuple[int, int]) -> list[T]:
    """The items at positions ``t`` with ``t % N == K``."""
    k, n = shard
    return list(items[k::n])


def shard_name(shard: tuple[int, int]) -> str:
    """``shard-K-of-N``: the stem of a shard's files under ``OUT/shards/``."""
    return f"shard-{shard[0]}-of-{shard[1]}"


def shard_files(out: Path, shard: tuple[int, int]) -> dict[str, Path]:
    """The bookkeeping files of ``shard`` in ``out``: info, manifest, fields."""
    base = out / SHARDS_DIR / shard_name(shard)
    return {"info": base.with_suffix(".json"),
            "manifest": base.with_suffix(".manifest.jsonl"),
            "fields": base.with_suffix(".fields.jsonl")}


def _image_path(label: str, i: int) -> str:
    return f"{label}/{label}_{i}.png"


def _field_paths(k: int) -> tuple[str, str]:
    return f"fields/field_{k}.png", f"fields/field_{k}_mask.png"


def prepare_shard_out(out: Path, labels: Sequence[str], shard: tuple[int, int],
                      tasks: Iterable[tuple[str, int]], field_ids: Iterable[int],
                      overwrite: bool) -> None:
    """Check ``out`` can take this shard: it may hold other shards' output, not other files.

    With ``overwrite``, this shard's earlier output and a merged manifest are removed (the
    other shards' files stay)."""
    if out.exists() and not out.is_dir():
        raise ShardError(f"out {str(out)!r} exists and is not a folder")
    if not out.is_dir():
        return
    allowed = {*labels, "fields", SHARDS_DIR}
    merged = [n for n in ("manifest.jsonl", "sheet.png") if (out / n).exists()]
    stray = sorted(p.name for p in out.iterdir() if p.name not in allowed and p.name not in merged)
    if stray:
        raise ShardError(f"out {str(out)!r} holds files that are not synth shard output "
                         f"(e.g. {stray[0]!r}); shards share a folder only with each other")
    own = [out / _image_path(lab, i) for lab, i in tasks]
    for k in field_ids:
        own += [out / p for p in _field_paths(k)]
    own += list(shard_files(out, shard).values())
    present = [p for p in own if p.exists()]
    if (present or merged) and not overwrite:
        what = (f"shard {shard[0]} of {shard[1]}'s output (e.g. {present[0].relative_to(out)})"
                if present else f"a merged dataset ({merged[0]})")
        raise ShardError(f"out {str(out)!r} already holds {what}; pass overwrite=True "
                         "(--overwrite) to render the shard again")
    for p in present + [out / n for n in merged] + [out / "fields" / "manifest.jsonl"]:
        p.unlink(missing_ok=True)


def write_shard_output(out: Path, shard: tuple[int, int], lines: list[str],
                       field_lines: list[str], info: dict[str, Any]) -> Path:
    """Write the shard's manifests, then its info file (written last: the shard is done)."""
    files = shard_files(out, shard)
    files["info"].parent.mkdir(parents=True, exist_ok=True)
    files["manifest"].write_text("".join(line + "\n" for line in lines))
    if info["fields"]:
        files["fields"].write_text("".join(line + "\n" for line in field_lines))
    body = {"shard": shard[0], **info, "images": len(lines), "field_count": len(field_lines)}
    files["info"].write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    return files["manifest"]


# ---- merging ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Shard:
    root: Path
    info: dict[str, Any]

    @property
    def key(self) -> tuple[int, int]:
        return int(self.info["shard"]), int(self.info["shards"])

    def where(self) -> str:
        return f"shard {self.key[0]} of {self.key[1]} ({self.root})"


def find_shards(dirs: Sequence[str | Path]) -> list[_Shard]:
    """Every finished shard in ``dirs``; a folder without one, or with an unfinished one,
    is an error."""
    if not dirs:
        raise ShardError("no shard folders given")
    found: list[_Shard] = []
    for d in dict.fromkeys(Path(x) for x in dirs):
        sd = d / SHARDS_DIR
        infos = sorted(p for p in sd.glob("shard-*.json") if _INFO.match(p.name))
        for manifest in sorted(sd.glob("shard-*-of-*.manifest.jsonl")):
            if not manifest.with_name(manifest.name.replace(".manifest.jsonl", ".json")).exists():
                raise ShardError(f"{manifest}: the shard did not finish (no info file beside "
                                 "it); render it again with --overwrite")
        if not infos:
            raise ShardError(f"{d}: no finished shard (no {SHARDS_DIR}/shard-K-of-N.json)")
        for p in infos:
            try:
                info = json.loads(p.read_text())
            except (OSError, ValueError) as err:
                raise ShardError(f"{p}: unreadable shard info ({err})") from None
            found.append(_Shard(d, info))
    return found


def check_shards(found: list[_Shard]) -> None:
    """One run (same parameters), each shard once, none missing."""
    first = found[0]
    for s in found[1:]:
        for key in AGREE:
            if s.info.get(key) != first.info.get(key):
                raise ShardError(f"shards disagree on {key}: {first.where()} has "
                                 f"{first.info.get(key)!r}, {s.where()} has {s.info.get(key)!r}")
    seen: dict[int, _Shard] = {}
    for s in found:
        if s.key[0] in seen:
            raise ShardError(f"shard {s.key[0]} of {s.key[1]} given twice: in "
                             f"{seen[s.key[0]].root} and {s.root}")
        seen[s.key[0]] = s
    n = first.key[1]
    gaps = [k for k in range(n) if k not in seen]
    if gaps:
        raise ShardError(f"missing shard(s) {', '.join(map(str, gaps))} of {n} "
                         f"(found {len(seen)})")


def _read_lines(path: Path, count: int, what: str) -> list[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    if len(lines) != count:
        raise ShardError(f"{path}: {len(lines)} lines, the shard info says {count} {what}")
    return lines


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as err:
        raise ShardError(f"{path}: missing or unreadable ({err.strerror})") from None


def _gather(s: _Shard, out: Path, order: dict[tuple[str, int], int],
            lines: dict[int, str]) -> list[tuple[Path, Path]]:
    """Check a shard's image lines against its partition and the image bytes; file them in
    ``lines`` by run position. Returns the (source, destination) copies it needs."""
    k, n = s.key
    files = shard_files(s.root, s.key)
    copies = []
    for line in _read_lines(files["manifest"], s.info["images"], "images"):
        rec = json.loads(line)
        pos = order.get((rec.get("label"), rec.get("index")))
        if pos is None or pos % n != k or pos in lines or rec.get("seed") != s.info["seed"]:
            raise ShardError(f"{files['manifest']}: line for {rec.get('path')!r} does not "
                             f"belong to {s.where()} or is repeated")
        if _sha256(s.root / rec["path"]) != rec["sha256"]:
            raise ShardError(f"{s.root / rec['path']}: bytes differ from its manifest line "
                             "(sha256); render the shard again with --overwrite")
        lines[pos] = line
        copies.append((s.root / rec["path"], out / rec["path"]))
    return copies


def _gather_fields(s: _Shard, out: Path, lines: dict[int, str]) -> list[tuple[Path, Path]]:
    k, n = s.key
    files = shard_files(s.root, s.key)
    copies = []
    count = s.info["field_count"]
    for line in _read_lines(files["fields"], count, "fields") if count else []:
        rec = json.loads(line)
        fid = int(Path(rec["path"]).stem.split("_")[1])
        if fid % n != k or fid in lines or _sha256(s.root / rec["path"]) != rec["sha256"]:
            raise ShardError(f"{files['fields']}: field line for {rec['path']!r} is repeated, "
                             f"not {s.where()}'s, or its image bytes differ")
        lines[fid] = line
        copies += [(s.root / rec["path"], out / rec["path"]),
                   (s.root / rec["mask_path"], out / rec["mask_path"])]
    return copies


def _prepare_merge_out(out: Path, sources: set[Path], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ShardError(f"out {str(out)!r} exists and is not a folder")
    if out.is_dir() and out.resolve() not in sources and any(out.iterdir()) and not overwrite:
        raise ShardError(f"out {str(out)!r} is not empty and is not one of the shard folders; "
                         "pass overwrite=True (--overwrite) to write into it")
    if (out / "manifest.jsonl").exists() and not overwrite:
        raise ShardError(f"out {str(out)!r} already holds a merged manifest.jsonl; pass "
                         "overwrite=True (--overwrite) to merge again")


def merge_shards(out: str | Path, shard_dirs: Sequence[str | Path], *, sheet: bool = False,
                 overwrite: bool = False) -> Path:
    """Merge finished shards into ``out``: the single run's files and ``manifest.jsonl``.

    Shards in another folder than ``out`` are copied; ``out``'s own ``shards/`` bookkeeping
    is removed after the merge (other folders are left as they are). Returns the manifest.
    """
    out = Path(out)
    found = find_shards(shard_dirs)
    check_shards(found)
    info = found[0].info
    labels, per_class, nfields = list(info["labels"]), int(info["per_class"]), int(info["fields"])
    _prepare_merge_out(out, {s.root.resolve() for s in found}, overwrite)
    order = {(lab, i): p for p, (lab, i) in
             enumerate((lab, i) for lab in labels for i in range(per_class))}
    lines: dict[int, str] = {}
    field_lines: dict[int, str] = {}
    copies: list[tuple[Path, Path]] = []
    for s in found:
        copies += _gather(s, out, order, lines)
        copies += _gather_fields(s, out, field_lines)
    if len(lines) != len(order) or len(field_lines) != nfields:
        raise ShardError(f"the shards hold {len(lines)} of {len(order)} images and "
                         f"{len(field_lines)} of {nfields} fields")
    for lab in labels:
        (out / lab).mkdir(parents=True, exist_ok=True)
    if nfields:
        (out / "fields").mkdir(exist_ok=True)
    for src, dst in copies:
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(lines[p] + "\n" for p in range(len(order))))
    if nfields:
        (out / "fields" / "manifest.jsonl").write_text(
            "".join(field_lines[k] + "\n" for k in range(nfields)))
    if sheet:
        from synth.dataset import write_sheet  # cycle

        write_sheet(out, labels, per_class, out / "sheet.png")
    _remove_bookkeeping(out, [s.key for s in found])
    return manifest


def _remove_bookkeeping(out: Path, keys: list[tuple[int, int]]) -> None:
    for key in keys:
        for p in shard_files(out, key).values():
            p.unlink(missing_ok=True)
    sd = out / SHARDS_DIR
    if sd.is_dir() and not any(sd.iterdir()):
        sd.rmdir()
