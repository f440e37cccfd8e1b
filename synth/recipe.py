"""Recipes: TOML files that fix every sampling range of the generator."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

import numpy as np

from edge.classes import CLASSES

RECIPE_DIR = Path(__file__).with_name("recipes")
BUILTIN = ("default", "shifted")
FAMILIES = ("lines", "vias", "routed", "xsection", "bumps", "surface")
OTHER = "other_defect"
ALL_LABELS: tuple[str, ...] = (*CLASSES, OTHER)
TOP_KINDS = ("elongated", "irregular", "partial", "small", "large", "merged")
XSEC_KINDS = ("voided", "necked", "misaligned", "not_landed")
OTHER_KINDS = ("particle", "residue", "scratch")

# Families on which each class's defect can be placed.
SUPPORTED = {
    "normal": set(FAMILIES),
    "ler": {"lines"},
    "open": {"lines", "routed"},
    "short": {"lines", "routed"},
    "void": {"lines", "vias"},
    "malformed_via": {"vias", "xsection"},
    "crack": set(FAMILIES),
    OTHER: set(FAMILIES),
}


@dataclass(frozen=True)
class Recipe:
    """A validated, fully resolved recipe (``data`` mirrors the TOML tables)."""

    name: str
    data: dict[str, Any] = field(repr=False)
    hash: str = ""

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, dotted: str) -> Any:
        """Value at a dotted key, e.g. ``recipe.get("sem.blur_px")``."""
        node: Any = self.data
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels this recipe renders: the seven classes, plus ``other_defect`` if enabled."""
        extra = (OTHER,) if self.data["classes"][OTHER]["enabled"] else ()
        return (*CLASSES, *extra)

    def replace(self, overrides: dict[str, Any], name: str | None = None) -> Recipe:
        """A new validated recipe with dotted-key overrides, e.g. ``{"sem.blur_px": [0, 0]}``."""
        data = copy.deepcopy(self.data)
        for dotted, value in overrides.items():
            _set_dotted(data, dotted, value, _default_data())
        return _make(name or self.name, data)


def _set_dotted(data: dict, dotted: str, value: Any, schema: dict) -> None:
    parts = dotted.split(".")
    node, sch = data, schema
    for part in parts[:-1]:
        if part not in sch or not isinstance(sch[part], dict):
            raise ValueError(f"unknown recipe key {dotted!r}")
        node, sch = node.setdefault(part, {}), sch[part]
    if parts[-1] not in sch:
        raise ValueError(f"unknown recipe key {dotted!r}")
    node[parts[-1]] = value


_DEFAULT_CACHE: dict[str, Any] = {}


def _default_data() -> dict[str, Any]:
    if "d" not in _DEFAULT_CACHE:
        with open(RECIPE_DIR / "default.toml", "rb") as fh:
            _DEFAULT_CACHE["d"] = tomllib.load(fh)
    return _DEFAULT_CACHE["d"]


def _merge(base: dict, over: dict, schema: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        dotted = f"{path}{key}"
        # families tables may name any subset of families; other tables must follow the schema
        if key not in schema and not path.endswith("families."):
            raise ValueError(
                f"unknown recipe key {dotted!r}; allowed here: {', '.join(sorted(schema))}"
            )
        sub = schema.get(key, {})
        if isinstance(value, dict) and key.endswith("families"):
            out[key] = dict(value)  # a families table replaces the base one
        elif isinstance(value, dict):
            if not isinstance(sub, dict):
                raise ValueError(f"recipe key {dotted!r} must be a value, not a table")
            out[key] = _merge(base.get(key, {}), value, sub, dotted + ".")
        else:
            if isinstance(sub, dict):
                raise ValueError(f"recipe key {dotted!r} must be a table")
            out[key] = value
    return out


def load_recipe(name_or_path: str | Path | Recipe = "default") -> Recipe:
    """Load ``default``, ``shifted`` or a TOML file (which may set ``base = "default"``)."""
    if isinstance(name_or_path, Recipe):
        return name_or_path
    text = str(name_or_path)
    if text in BUILTIN:
        path = RECIPE_DIR / f"{text}.toml"
    else:
        path = Path(text)
        if not path.is_file():
            raise ValueError(
                f"recipe {text!r} is neither a built-in recipe ({', '.join(BUILTIN)}) nor a file"
            )
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"recipe file {str(path)!r} is not valid TOML: {exc}") from exc
    base_name = raw.pop("base", None)
    schema = _default_data()
    if base_name is not None:
        if base_name not in BUILTIN:
            raise ValueError(f"recipe key 'base' must be one of {BUILTIN}, got {base_name!r}")
        base = load_recipe(base_name).data if base_name != "default" else schema
    else:
        base = schema
    data = _merge(base, raw, schema)
    name = data.get("recipe", {}).get("name") or path.stem
    return _make(name, data)


def _make(name: str, data: dict[str, Any]) -> Recipe:
    validate(data)
    data["recipe"]["name"] = name
    canon = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return Recipe(name=name, data=data, hash=hashlib.sha256(canon).hexdigest())


def _check_range(key: str, value: Any, integer: bool = False) -> None:
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    if not ok or value[0] > value[1]:
        raise ValueError(f"recipe key {key!r} must be a range [lo, hi] with lo <= hi, got {value!r}")
    if integer and not all(float(v).is_integer() for v in value):
        raise ValueError(f"recipe key {key!r} must be an integer range, got {value!r}")
    if value[0] < 0 and not key.endswith(("tilt_deg", "offset")):
        raise ValueError(f"recipe key {key!r} must not be negative, got {value!r}")


def validate(data: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first bad key; schema = the default recipe."""
    schema = _default_data()

    def walk(node: dict, sch: dict, path: str) -> None:
        for key, sval in sch.items():
            dotted = f"{path}{key}"
            if key == "families":
                continue
            if key not in node:
                raise ValueError(f"recipe is missing key {dotted!r}")
            val = node[key]
            if isinstance(sval, dict):
                walk(val, sval, dotted + ".")
            elif isinstance(sval, list) and sval and isinstance(sval[0], str):
                allowed = {
                    "top_kinds": TOP_KINDS, "xsec_kinds": XSEC_KINDS, "kinds": OTHER_KINDS,
                }[key]
                if not isinstance(val, list) or not val or any(v not in allowed for v in val):
                    raise ValueError(
                        f"recipe key {dotted!r} must be a non-empty list from {allowed}, got {val!r}"
                    )
            elif isinstance(sval, list):
                _check_range(dotted, val, integer=all(isinstance(v, int) for v in sval))
            elif isinstance(sval, bool):
                if not isinstance(val, bool):
                    raise ValueError(f"recipe key {dotted!r} must be true or false, got {val!r}")
            elif isinstance(sval, (int, float)):
                if not isinstance(val, (int, float)) or isinstance(val, bool):
                    raise ValueError(f"recipe key {dotted!r} must be a number, got {val!r}")
                if key.endswith("_prob") and not 0.0 <= val <= 1.0:
                    raise ValueError(f"recipe key {dotted!r} must be in [0, 1], got {val!r}")

    walk(data, schema, "")
    rec = data["recipe"]
    if data["sem"]["frames"][0] < 1:
        raise ValueError(
            f"recipe key 'sem.frames' counts averaged scans and must start at 1, "
            f"got {data['sem']['frames']!r}"
        )
    if rec["bit_depth"] not in (8, 16):
        raise ValueError(f"recipe key 'recipe.bit_depth' must be 8 or 16, got {rec['bit_depth']!r}")
    if rec["supersample"] not in (1, 2, 3, 4):
        raise ValueError(f"recipe key 'recipe.supersample' must be 1..4, got {rec['supersample']!r}")
    if not isinstance(rec["size"], int) or rec["size"] < 32:
        raise ValueError(f"recipe key 'recipe.size' must be an integer >= 32, got {rec['size']!r}")
    for label in ALL_LABELS:
        fams = data["classes"].get(label, {}).get("families")
        if not isinstance(fams, dict) or not fams:
            raise ValueError(f"recipe table 'classes.{label}.families' is missing or empty")
        for fam, w in fams.items():
            if fam not in SUPPORTED[label]:
                raise ValueError(
                    f"recipe key 'classes.{label}.families.{fam}': family must be one of "
                    f"{sorted(SUPPORTED[label])}"
                )
            if not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f"recipe key 'classes.{label}.families.{fam}' must be a weight >= 0")
        if sum(fams.values()) <= 0:
            raise ValueError(f"recipe table 'classes.{label}.families' needs a positive weight")
    extra = set(data["classes"]) - set(ALL_LABELS)
    if extra:
        raise ValueError(f"unknown recipe table 'classes.{sorted(extra)[0]}'; labels: {ALL_LABELS}")


# ---- sampling helpers -------------------------------------------------------------------------

def derive_seed(seed: int, class_index: int, index: int) -> int:
    """The 64-bit seed of image ``index`` of class ``class_index`` under run seed ``seed``."""
    ss = np.random.SeedSequence([int(seed), int(class_index), int(index)])
    return int(ss.generate_state(1, np.uint64)[0])


def make_rng(image_seed: int) -> np.random.Generator:
    """The generator every pixel of one image is drawn from."""
    return np.random.Generator(np.random.PCG64(image_seed))


def uni(rng: np.random.Generator, rng_range: list) -> float:
    """A uniform draw from ``[lo, hi]``."""
    lo, hi = rng_range
    return float(lo + (hi - lo) * rng.random())


def loguni(rng: np.random.Generator, rng_range: list) -> float:
    """A log-uniform draw from ``[lo, hi]`` (uniform when ``lo <= 0`` or ``lo == hi``)."""
    lo, hi = rng_range
    if lo <= 0 or lo == hi:
        return uni(rng, rng_range)
    return float(np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * rng.random()))


def randint(rng: np.random.Generator, rng_range: list) -> int:
    """A uniform integer draw from ``[lo, hi]``, both included."""
    lo, hi = rng_range
    return int(rng.integers(int(lo), int(hi) + 1))


def choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    """One key of ``weights``, drawn with probability proportional to its weight."""
    keys = sorted(weights)
    w = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]
