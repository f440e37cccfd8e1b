"""Compare `semedge classify --json` results of x86 and the emulated ARM CPUs.

    compare.py --results DIR --plan plan.json [--markdown OUT.md]

``DIR/<platform>/<run>.jsonl`` holds one JSON object per image (``<run>.err`` the
command's stderr), for the platforms ``x86``, ``cortex-a72`` and ``cortex-a76`` and the
runs ``cmp-<format>`` (one forced backend and format each, see prepare.py) plus, on ARM,
``rpi4`` / ``rpi5`` (the shipped profiles, run as a user would).

Pass rule, per run and ARM CPU, against x86 on the same images with the same format:
the same images, no error, the same backend string, the same image label, the same tile
grid (boxes) and tile labels, and every image and tile score within the tolerance of the
format's precision (``TOLERANCE``). Exit status 0 only when every row passed.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

PLATFORMS = ("x86", "cortex-a72", "cortex-a76")
ARM = PLATFORMS[1:]
SHIPPED = {"cortex-a72": "rpi4", "cortex-a76": "rpi5"}

TOLERANCE = {"onnx": 1e-3, "onnx-int8": 2e-2, "tflite-int8": 2e-2, "tflite-int8-full": 2e-2}
"""Largest allowed |score(ARM) - score(x86)|, for image and tile scores (probabilities).

fp32: the kernels differ (NEON vs AVX2/AVX-512 GEMM and convolutions, other summation
orders and FMA use), which moves logits by ~1e-6 relative; 1e-3 leaves a wide margin and
still catches a wrong kernel. int8: requantization rounding and the u8s8 kernels differ
between x86 (VNNI/AVX2) and ARM (SDOT on A76, plain NEON on A72); one quantization step of
a logit moves a probability by up to ~1e-2."""


def load(path: Path) -> dict[str, dict]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            obj = json.loads(line)
            out[obj["path"]] = obj
    return out


def chosen(err_path: Path) -> tuple[str, str, bool]:
    """(backend, format, fallback?) from the ``semedge: target ...`` line of stderr."""
    text = err_path.read_text() if err_path.exists() else ""
    m = re.search(r"^semedge: target \S+ \(.*?\); (\S+) (\S+?)(;.*)?$", text, re.M)
    if not m:
        return "?", "?", False
    return m.group(1), m.group(2), "fallback" in (m.group(3) or "")


def compare(ref: dict[str, dict], got: dict[str, dict], tol: float) -> tuple[bool, dict]:
    """Compare one ARM run with the x86 run; ``(ok, stats)``."""
    problems: list[str] = []
    max_img = max_tile = 0.0
    labels_ok = 0
    if set(ref) != set(got):
        problems.append(f"image sets differ: only x86 {sorted(set(ref) - set(got))[:3]}, "
                        f"only ARM {sorted(set(got) - set(ref))[:3]}")
    for path in sorted(set(ref) & set(got)):
        a, b = ref[path], got[path]
        if "error" in a or "error" in b:
            problems.append(f"{path}: error x86={a.get('error')!r} arm={b.get('error')!r}")
            continue
        if a["backend"] != b["backend"]:
            problems.append(f"{path}: backend {a['backend']} vs {b['backend']}")
        if a["label"] == b["label"]:
            labels_ok += 1
        else:
            problems.append(f"{path}: label {a['label']} vs {b['label']}")
        d = abs(a["score"] - b["score"])
        max_img = max(max_img, d)
        if d > tol:
            problems.append(f"{path}: score {a['score']:.6f} vs {b['score']:.6f}")
        ta, tb = a["tiles"], b["tiles"]
        if [t["box"] for t in ta] != [t["box"] for t in tb]:
            problems.append(f"{path}: tile grids differ ({len(ta)} vs {len(tb)} tiles)")
            continue
        for i, (x, y) in enumerate(zip(ta, tb)):
            if x["label"] != y["label"]:
                problems.append(f"{path}: tile {i} label {x['label']} vs {y['label']}")
            dt = abs(x["score"] - y["score"])
            max_tile = max(max_tile, dt)
            if dt > tol:
                problems.append(f"{path}: tile {i} score {x['score']:.6f} vs {y['score']:.6f}")
    stats = {"images": len(ref), "labels_ok": labels_ok, "max_image": max_img,
             "max_tile": max_tile, "problems": problems}
    return not problems, stats


def cell(ok: bool, st: dict) -> str:
    mark = "PASS" if ok else "FAIL"
    return (f"{mark}: labels {st['labels_ok']}/{st['images']}, "
            f"max score diff image {st['max_image']:.1e}, tile {st['max_tile']:.1e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, type=Path)
    ap.add_argument("--plan", required=True, type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    plan = json.loads(args.plan.read_text())
    res = args.results

    lines = [
        f"Bundle {plan['bundle_name']!r} ({', '.join(plan['formats_in_bundle'])}); "
        f"{plan['images']['samples']} shipped samples + {plan['images']['synthetic']} "
        "synthetic fields; x86 is the reference.",
        "",
        "| backend / format | tolerance | x86 (reference) | cortex-a72 (Pi 4) | cortex-a76 (Pi 5) |",
        "|---|---|---|---|---|",
    ]
    failures: list[str] = []
    for row in plan["compare"]:
        fmt, run = row["format"], f"cmp-{row['format']}"
        tol = TOLERANCE[fmt]
        ref_path = res / "x86" / f"{run}.jsonl"
        if not ref_path.exists():
            failures.append(f"{run}: no x86 result")
            lines.append(f"| {row['backend']} {fmt} | {tol:g} | FAIL: no result | | |")
            continue
        ref = load(ref_path)
        errors = sum("error" in r for r in ref.values())
        backend = next((r["backend"] for r in ref.values() if "backend" in r), "?")
        labels = ", ".join(f"{k}:{v}" for k, v in sorted(_count(ref).items()))
        x86 = f"{len(ref)} images ({labels}); {backend}" + (f"; {errors} ERRORS" if errors else "")
        if errors or not ref:
            failures.append(f"{run}: x86 reference has {errors} errors / {len(ref)} images")
        cells = []
        for cpu in ARM:
            got_path = res / cpu / f"{run}.jsonl"
            if not got_path.exists():
                failures.append(f"{run} {cpu}: no result")
                cells.append("FAIL: no result")
                continue
            ok, st = compare(ref, load(got_path), tol)
            cells.append(cell(ok, st))
            if not ok:
                failures += [f"{run} {cpu}: {p}" for p in st["problems"]]
        lines.append(f"| {row['backend']} {fmt} | {tol:g} | {x86} | {cells[0]} | {cells[1]} |")
    for fmt, why in plan["skipped"].items():
        lines.append(f"| {_backend(fmt)} {fmt} | - | {why} | {why} | {why} |")

    # The shipped Pi profiles, run as a user would (no forced backend).
    shipped = []
    has_int8 = any(r["format"] == "tflite-int8" for r in plan["compare"])
    for cpu in ARM:
        run = SHIPPED[cpu]
        got_path = res / cpu / f"{run}.jsonl"
        if not got_path.exists():
            failures.append(f"{run} on {cpu}: no result")
            shipped.append(f"| `--target {run}` on {cpu} | FAIL: no result | |")
            continue
        backend, fmt, fallback = chosen(res / cpu / f"{run}.err")
        note = f"{backend} {fmt}" + (" [fallback]" if fallback else "")
        if has_int8 and (backend != "tflite" or fallback):
            failures.append(f"{run} on {cpu}: bundle has TFLite files but the profile ran "
                            f"{note} (TFLite runtime missing or broken on ARM?)")
        if not has_int8 and (backend != "onnxruntime" or not fallback):
            failures.append(f"{run} on {cpu}: bundle has no TFLite files, so the profile's "
                            f"declared onnx-int8 fallback was expected; it ran {note}")
        ref_path = res / "x86" / f"cmp-{fmt}.jsonl"
        if fmt not in TOLERANCE or not ref_path.exists():
            failures.append(f"{run} on {cpu}: ran {note}, no x86 reference for it")
            shipped.append(f"| `--target {run}` on {cpu} | {note} | FAIL: no x86 reference |")
            continue
        ok, st = compare(load(ref_path), load(got_path), TOLERANCE[fmt])
        if not ok:
            failures += [f"{run} on {cpu}: {p}" for p in st["problems"]]
        shipped.append(f"| `--target {run}` on {cpu} | {note} | {cell(ok, st)} vs x86 cmp-{fmt} |")
    lines += ["", "| shipped profile | ran | vs x86, same format |", "|---|---|---|", *shipped]

    # Per image: label and score on each platform, for every compared format.
    for row in plan["compare"]:
        run = f"cmp-{row['format']}"
        data = {p: load(res / p / f"{run}.jsonl") for p in PLATFORMS
                if (res / p / f"{run}.jsonl").exists()}
        if "x86" not in data:
            continue
        lines += ["", f"{row['backend']} {row['format']}, per image:", "",
                  "| image | tiles | x86 | cortex-a72 | cortex-a76 |", "|---|---|---|---|---|"]
        for path, r in sorted(data["x86"].items()):
            vals = []
            for p in PLATFORMS:
                o = data.get(p, {}).get(path)
                vals.append("missing" if o is None else
                            f"error: {o['error']}" if "error" in o else
                            f"{o['label']} {o['score']:.4f}")
            lines.append(f"| {path} | {len(r.get('tiles', []))} | {' | '.join(vals)} |")

    lines.append("")
    if failures:
        lines.append(f"RESULT: FAIL ({len(failures)} problems)")
        lines += [f"  - {f}" for f in failures[:50]]
    else:
        lines.append("RESULT: PASS (every compared backend matched on both ARM CPUs)")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 1 if failures else 0


def _count(results: dict[str, dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results.values():
        if "label" in r:
            out[r["label"]] = out.get(r["label"], 0) + 1
    return out


def _backend(fmt: str) -> str:
    return "tflite" if fmt.startswith("tflite") else "onnxruntime"


if __name__ == "__main__":
    raise SystemExit(main())
