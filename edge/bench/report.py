"""Presenting a bench result: the JSON schema check and the terminal tables (rich).

Everything here works on the JSON document (``BenchResult.as_dict()``), so the
terminal and ``--json`` always show the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import JustifyMethod

__all__ = ["SCHEMA", "render", "validate"]

NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))
OPT_INT = (int, type(None))

SCHEMA: dict[str, Any] = {
    "document": {
        "schema": str, "semedge_version": str, "created": str, "seconds": NUM,
        "config": dict, "machine": dict, "bundle": dict, "target": dict,
        "evaluation": dict, "formats": list, "cascade": list, "cascade_info": dict,
        "preprocess": list, "preprocess_reason": OPT_STR, "threads": list,
        "threads_info": dict,
    },
    "machine": {"cpu": str, "machine": str, "cpu_count": OPT_INT, "usable_cpus": int,
                "python": str, "libraries": dict},
    "format_row": {"format": str, "size_bytes": OPT_INT, "reason": OPT_STR},
    "format_row_ran": {
        "backend": str, "stage1_recall": OPT_NUM, "stage1_precision": OPT_NUM,
        "stage2_macro_f1": OPT_NUM, "stage2_agreement": OPT_NUM, "cascade_macro_f1": OPT_NUM,
        "latency_ms_p50": NUM, "latency_ms_p95": NUM, "latency_ms_p99": NUM,
        "stage2_latency_ms_p50": NUM, "stage1_ms_per_tile_batched": NUM,
        "first_call_ms": NUM, "load_ms": NUM, "peak_rss_bytes": OPT_INT,
        "accuracy_reason": OPT_STR,
    },
    "cascade_row": {
        "defect_rate": NUM, "tiles": int, "stage2_tiles": int,
        "cascade_ms_per_field": NUM, "monolithic_ms_per_field": OPT_NUM, "speedup": OPT_NUM,
        "cascade_ms_per_tile": NUM, "monolithic_ms_per_tile": OPT_NUM, "flag_rate": OPT_NUM,
        "cascade_ms_per_field_at_flag_rate": OPT_NUM,
    },
    "preprocess_row": {"dtype": str, "fused_ms": NUM, "numpy_ms": NUM, "opencv_ms": NUM,
                       "bound_ms": NUM},
    "threads_row": {"threads": int, "cascade_ms_per_field": NUM, "stage1_ms": NUM},
}
"""Required keys and their types, per part of the document (``docs/bench.md``)."""


def _check(obj: Any, spec: Mapping[str, Any], where: str, problems: list[str]) -> None:
    if not isinstance(obj, dict):
        problems.append(f"{where}: expected an object, got {type(obj).__name__}")
        return
    for key, kind in spec.items():
        if key not in obj:
            problems.append(f"{where}: missing key {key!r}")
        elif isinstance(obj[key], bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            problems.append(f"{where}.{key}: expected {kind}, got bool")
        elif not isinstance(obj[key], kind):
            problems.append(f"{where}.{key}: expected {kind}, got {type(obj[key]).__name__}")


def validate(doc: Any) -> list[str]:
    """Problems of a bench JSON document against :data:`SCHEMA` (empty: it conforms)."""
    problems: list[str] = []
    _check(doc, SCHEMA["document"], "$", problems)
    if problems:
        return problems
    _check(doc["machine"], SCHEMA["machine"], "$.machine", problems)
    for i, row in enumerate(doc["formats"]):
        _check(row, SCHEMA["format_row"], f"$.formats[{i}]", problems)
        if isinstance(row, dict) and row.get("reason") is None:
            _check(row, SCHEMA["format_row_ran"], f"$.formats[{i}]", problems)
    for part, spec in (("cascade", "cascade_row"), ("preprocess", "preprocess_row"),
                       ("threads", "threads_row")):
        for i, row in enumerate(doc[part]):
            _check(row, SCHEMA[spec], f"$.{part}[{i}]", problems)
    return problems


# ------------------------------------------------------------------------ rendering


def _ms(v: Any, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _pct(v: Any) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _ratio(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}"


def _times(v: Any) -> str:
    return "—" if v is None else f"{v:.2f}×"


def _bytes(v: Any) -> str:
    if v is None:
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if v >= scale:
            return f"{v / scale:.1f} {unit}"
    return f"{v} B"


def _machine_line(m: Mapping[str, Any]) -> str:
    libs = m.get("libraries", {})
    parts = [f"CPU {m.get('cpu')} ({m.get('machine')})",
             f"{m.get('usable_cpus')} of {m.get('cpu_count')} CPUs usable"]
    if m.get("board"):
        parts.insert(0, f"board {m['board']}")
    if m.get("memory_bytes"):
        parts.append(f"{_bytes(m['memory_bytes'])} RAM")
    parts.append(f"python {m.get('python')}")
    parts += [f"{k} {v}" for k, v in libs.items()]
    omp = m.get("kernels_openmp")
    parts.append("kernels " + ("OpenMP" if omp else "no OpenMP" if omp is not None else "not built"))
    return " · ".join(parts)


def render(doc: Mapping[str, Any], console: Any) -> None:
    """Print the bench document as tables on a ``rich.console.Console``."""
    from rich.markup import escape
    from rich.table import Table

    def say(text: str) -> None:
        console.print(text, highlight=False)

    notes: list[str] = []

    def note(text: str) -> str:
        notes.append(text)
        return f"[{len(notes)}]"

    b, t, ev = doc["bundle"], doc["target"], doc["evaluation"]
    say(f"[bold]semedge bench[/bold] {escape(doc['semedge_version'])}"
        f"{' (quick mode: numbers not meaningful)' if doc['config'].get('quick') else ''}")
    say(escape(_machine_line(doc["machine"])))
    say(escape(f"bundle {b['name']!r} at {b['path']} · target {t['name']} ({t['reason']}; "
               f"{t['backend']}, {t['threads']} threads, batch {t['batch']})"))
    if ev.get("reason"):
        say(f"evaluation set: [yellow]none[/yellow] — {escape(ev['reason'])}")
    else:
        say(escape(f"evaluation set: {ev['tiles']} tiles rendered by synth (recipe "
                   f"{ev['recipe']}, seed {ev['seed']}, {ev['per_class']} per class)"))

    # formats
    table = Table(title="Formats (latency: one tile per call; stage 1 unless marked s2)")
    cols: list[tuple[str, JustifyMethod]] = [
        ("format", "left"), ("size", "right"), ("s1 recall", "right"),
        ("s1 prec.", "right"), ("s2 macro-F1", "right"), ("s2 agree fp32", "right"),
        ("p50 ms", "right"), ("p95 ms", "right"), ("p99 ms", "right"),
        ("s2 p50 ms", "right"), ("batched ms/tile s1+s2", "right"), ("first call ms", "right"),
        ("load ms", "right"), ("peak RSS", "right")]
    for name, justify in cols:
        table.add_column(name, justify=justify)
    for r in doc["formats"]:
        if r.get("reason"):
            table.add_row(r["format"], _bytes(r.get("size_bytes")),
                          f"n/a {note(r['format'] + ': ' + r['reason'])}",
                          *[""] * (len(cols) - 3))
            continue
        if r.get("accuracy_reason") and r.get("stage1_recall") is None:
            note(f"{r['format']} accuracy: {r['accuracy_reason']}")
        table.add_row(
            r["format"], _bytes(r["size_bytes"]), _pct(r["stage1_recall"]),
            _pct(r["stage1_precision"]), _ratio(r["stage2_macro_f1"]),
            _pct(r["stage2_agreement"]), _ms(r["latency_ms_p50"], 3),
            _ms(r["latency_ms_p95"], 3), _ms(r["latency_ms_p99"], 3),
            _ms(r["stage2_latency_ms_p50"], 3),
            f"{_ms(r['stage1_ms_per_tile_batched'], 3)}+{_ms(r['stage2_ms_per_tile_batched'], 3)}",
            _ms(r["first_call_ms"]), _ms(r["load_ms"], 1), _bytes(r["peak_rss_bytes"]),
        )
    console.print(table)

    # cascade vs monolithic
    ci = doc["cascade_info"]
    if doc["cascade"]:
        f = ci.get("field", ["?", "?"])
        table = Table(title=f"Cascade vs monolithic per {f[0]}×{f[1]} field "
                            f"({ci.get('format')}, {ci.get('threads')} threads)")
        # the headline is the cost at the flag rate stage 1 really has; a perfect gate's after
        for name in ("defect rate", "s1 flag rate", "s2 tiles", "cascade ms", "monolithic ms",
                     "p95 mono", "speed-up", "| perfect gate: s2 tiles", "cascade ms ",
                     "p95 casc.", "speed-up ", "ms/tile casc.", "ms/tile mono"):
            table.add_column(name, justify="right")
        for r in doc["cascade"]:
            table.add_row(
                _pct(r["defect_rate"]), _pct(r["flag_rate"]),
                "—" if r["stage2_tiles_at_flag_rate"] is None else str(r["stage2_tiles_at_flag_rate"]),
                _ms(r["cascade_ms_per_field_at_flag_rate"]), _ms(r["monolithic_ms_per_field"]),
                _ms(r["monolithic_ms_per_field_p95"]), _times(r["speedup_at_flag_rate"]),
                str(r["stage2_tiles"]), _ms(r["cascade_ms_per_field"]),
                _ms(r["cascade_ms_per_field_p95"]), _times(r["speedup"]),
                _ms(r["cascade_ms_per_tile"], 3), _ms(r["monolithic_ms_per_tile"], 3),
            )
        console.print(table)
        if ci.get("monolithic_reason"):
            say(f"monolithic: [yellow]not measured[/yellow] — {escape(ci['monolithic_reason'])}")
        acc = ci.get("accuracy", {})
        c, m = acc.get("cascade"), acc.get("monolithic")
        if c or m:
            parts = []
            if c:
                parts.append(f"cascade macro-F1 {_ratio(c['macro_f1'])}, recall "
                             f"{_pct(c['recall'])}, precision {_pct(c['precision'])}")
            if m:
                parts.append(f"monolithic macro-F1 {_ratio(m['macro_f1'])}, recall "
                             f"{_pct(m['recall'])}, precision {_pct(m['precision'])}")
            say("accuracy on the evaluation set (7 classes): " + escape("; ".join(parts)))
        elif acc.get("reason"):
            say(f"accuracy: not measured — {escape(acc['reason'])}")

    # preprocessing
    if doc["preprocess"]:
        table = Table(title="Preprocessing: normalize + tile a field, one thread")
        for name in ("input", "fused ms", "numpy ms", "OpenCV ms", "bandwidth bound ms",
                     "fused/bound", "numpy/fused", "OpenCV/fused"):
            table.add_column(name, justify="right")
        for p in doc["preprocess"]:
            table.add_row(f"{p['dtype']} {p['shape'][0]}×{p['shape'][1]}", _ms(p["fused_ms"]),
                          _ms(p["numpy_ms"]), _ms(p["opencv_ms"]), _ms(p["bound_ms"]),
                          _times(p["fused_over_bound"]), _times(p["numpy_over_fused"]),
                          _times(p["opencv_over_fused"]))
        console.print(table)
    elif doc.get("preprocess_reason"):
        say(f"preprocessing: not measured — {escape(doc['preprocess_reason'])}")

    # threads
    if doc["threads"]:
        ti = doc["threads_info"]
        table = Table(title=f"Thread sweep, target {ti.get('target')} "
                            f"({_pct(ti.get('defect_rate'))} defects, "
                            f"{ti.get('usable_cpus')} CPUs usable)")
        for name in ("threads", "tile ms", "stage 1 ms", "stage 1 ms/tile", "stage 2 ms",
                     "cascade ms/field", "monolithic ms/field", "speed-up"):
            table.add_column(name, justify="right")
        for r in doc["threads"]:
            table.add_row(str(r["threads"]), _ms(r["tile_ms"]), _ms(r["stage1_ms"]),
                          _ms(r["stage1_ms"] / r["tiles"], 3), _ms(r["stage2_ms"]),
                          _ms(r["cascade_ms_per_field"]), _ms(r["monolithic_ms_per_field"]),
                          _times(r["speedup"]))
        console.print(table)

    for i, text in enumerate(notes, 1):
        say(escape(f"[{i}] {text}"))
    say(f"measured in {doc['seconds']:.1f} s")
