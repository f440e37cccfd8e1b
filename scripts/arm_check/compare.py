"""Compare `semedge classify --json` results of x86 and the emulated ARM CPUs.

    compare.py --results DIR --plan plan.json [--markdown OUT.md]

``DIR/<platform>/<run>.jsonl`` holds one JSON object per image (``<run>.err`` the
command's stderr), for the platforms ``x86``, ``cortex-a72`` and ``cortex-a76`` and the
runs ``cmp-<format>`` (one forced backend and format each, see prepare.py) plus, on ARM,
``rpi4`` / ``rpi5`` (the shipped profiles, run as a user would).

Pass rule, per run and ARM CPU, against x86 on the same images with the same format:
the same images, no error, the same backend string, the same tile grid (boxes), every
image and tile score within the tolerance of the format's precision (``TOLERANCE``) where
the labels agree, and the same image and tile labels -- except, for an int8 format, a
label that differs on a near-tie (``near_tie``): where x86's own answer sits within the
tolerance of a decision boundary, another rounding of the same int8 model may land on the
other side. Such flips are counted and listed apart from score drift; any other label
difference fails. Exit status 0 only when every row passed.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

PLATFORMS = ("x86", "cortex-a72", "cortex-a76")
ARM = PLATFORMS[1:]
SHIPPED = {"cortex-a72": "rpi4", "cortex-a76": "rpi5"}

TOLERANCE = {"onnx": 1e-3, "onnx-int8": 2e-2, "tflite-int8": 0.1, "tflite-int8-full": 0.1}
"""Largest allowed |score(ARM) - score(x86)|, for image and tile scores (probabilities).

fp32: the kernels differ (NEON vs AVX2/AVX-512 GEMM and convolutions, other summation
orders and FMA use), which moves logits by ~1e-6 relative; 1e-3 leaves a wide margin and
still catches a wrong kernel. ONNX Runtime int8: requantization rounding and the u8s8
kernels differ between x86 (VNNI/AVX2) and ARM (SDOT on A76, plain NEON on A72); one
quantization step of a logit moves a probability by up to ~1e-2 (measured: identical).
TFLite int8 (XNNPACK): its x86 and ARM int8 kernels requantize differently, and a
one-step difference in an early layer carries through every later one. Measured with the
shipped bundle (docs/arm.md): up to 0.03 on this check's images and 0.096 on 752 real SEM
crops (median 0.007, 99th percentile 0.05), where the same TFLite model on x86 is up to
0.12 from ONNX fp32; 0.1 holds the ARM rounding to the size of the quantization error
the parity gate already accepts."""

STAGE1_LOGIT_TOL = 0.5
"""A normal/defect flip is a near-tie when the stage-1 logit is this close to the
threshold's. Measured ARM-vs-x86 TFLite drift of that logit: at most 0.34 on the real
crops. Logits, not probabilities: the threshold sits near 0.05, where a probability
tolerance would span most of the normal range."""

INT8 = {"onnx-int8", "tflite-int8", "tflite-int8-full"}
"""Formats whose labels may differ on near-ties (``near_tie``)."""

NORMAL, UNKNOWN = "normal", "unknown"


def near_tie(a: tuple[str, float], b: tuple[str, float], thresholds: dict[str, float],
             tol: float) -> str | None:
    """Why labels ``a`` (x86) and ``b`` (ARM), each ``(label, score)``, may differ, or None.

    Every score is the confidence in its label (edge/results.py): ``1 - stage-1 score``
    for ``normal``, the top stage-2 probability otherwise. A flip is a near-tie when the
    boundary it crosses is within ``tol`` of the answer:

    * normal / defect: the normal side's stage-1 logit is within ``STAGE1_LOGIT_TOL``
      under the threshold's;
    * a class / unknown: both top probabilities are within ``tol`` of the unknown
      threshold;
    * two classes: both top probabilities are at most 0.5 + ``tol`` and within ``tol``
      of each other (two classes within ``2 tol`` of each other cannot have a top
      probability over 0.5 + ``tol``).
    """
    (la, sa), (lb, sb) = a, b
    if la == lb:
        return "same"
    if NORMAL in (la, lb):
        s1 = 1.0 - (sa if la == NORMAL else sb)
        gap = _logit(thresholds["stage1"]) - _logit(s1)
        return "stage-1 threshold" if gap <= STAGE1_LOGIT_TOL else None
    if UNKNOWN in (la, lb):
        u = thresholds["unknown"]
        return "unknown threshold" if abs(sa - u) <= tol and abs(sb - u) <= tol else None
    if max(sa, sb) <= 0.5 + tol and abs(sa - sb) <= tol:
        return "stage-2 top-2"
    return None


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


def compare(ref: dict[str, dict], got: dict[str, dict], tol: float,
            thresholds: dict[str, float] | None = None) -> tuple[bool, dict]:
    """Compare one ARM run with the x86 run; ``(ok, stats)``.

    ``thresholds`` (``stage1``, ``unknown``) allows near-tie label flips (int8 formats);
    without it every label must match.
    """
    problems: list[str] = []
    flips: list[str] = []
    max_img = max_tile = 0.0
    labels_ok = 0

    def judge(where: str, a: dict, b: dict) -> bool:
        """Labels of ``a`` and ``b`` agree, or differ on a near-tie (listed in flips)."""
        if a["label"] == b["label"]:
            return True
        why = (near_tie((a["label"], a["score"]), (b["label"], b["score"]), thresholds, tol)
               if thresholds is not None else None)
        text = (f"{where}: label {a['label']} {a['score']:.4f} vs "
                f"{b['label']} {b['score']:.4f}")
        if why is None:
            problems.append(text)
        else:
            flips.append(f"{text} (near-tie: {why})")
        return False

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
        ta, tb = a["tiles"], b["tiles"]
        if [t["box"] for t in ta] != [t["box"] for t in tb]:
            problems.append(f"{path}: tile grids differ ({len(ta)} vs {len(tb)} tiles)")
            continue
        if a["label"] == b["label"]:
            labels_ok += 1
            d = abs(a["score"] - b["score"])
            max_img = max(max_img, d)
            if d > tol:
                problems.append(f"{path}: score {a['score']:.6f} vs {b['score']:.6f}")
        elif _decisive_swap(a, b):
            # both labels are tile labels on both platforms: only which flagged tile
            # decides (the highest stage-1 score, a near-tie between tiles) changed
            flips.append(f"{path}: label {a['label']} vs {b['label']} "
                         "(near-tie: decisive tile)")
        else:
            judge(path, a, b)
        for i, (x, y) in enumerate(zip(ta, tb)):
            if judge(f"{path}: tile {i}", x, y):
                dt = abs(x["score"] - y["score"])
                max_tile = max(max_tile, dt)
                if dt > tol:
                    problems.append(f"{path}: tile {i} score {x['score']:.6f} vs "
                                    f"{y['score']:.6f}")
    stats = {"images": len(ref), "labels_ok": labels_ok, "max_image": max_img,
             "max_tile": max_tile, "flips": flips, "problems": problems}
    return not problems, stats


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1.0 - 1e-7)
    return math.log(p / (1.0 - p))


def _decisive_swap(a: dict, b: dict) -> bool:
    labels_a = {t["label"] for t in a["tiles"]}
    labels_b = {t["label"] for t in b["tiles"]}
    pair = {a["label"], b["label"]}
    return NORMAL not in pair and pair <= labels_a and pair <= labels_b


def cell(ok: bool, st: dict) -> str:
    mark = "PASS" if ok else "FAIL"
    flips = f", {len(st['flips'])} near-tie label flips" if st["flips"] else ""
    return (f"{mark}: labels {st['labels_ok']}/{st['images']}{flips}, "
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
    flips: list[str] = []
    thresholds = plan.get("thresholds")
    fp32_ref = res / "x86" / "cmp-onnx.jsonl"
    for row in plan["compare"]:
        fmt, run = row["format"], f"cmp-{row['format']}"
        tol = TOLERANCE[fmt]
        ties = thresholds if fmt in INT8 else None
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
        if fmt != "onnx" and fp32_ref.exists():
            # context for the tolerance: how far this int8 model already is from fp32
            _, q = compare(load(fp32_ref), ref, 1.0, thresholds)
            x86 += (f"; vs ONNX fp32 on x86: max score diff {max(q['max_image'], q['max_tile']):.2f}"
                    f", {len(q['flips']) + len(q['problems'])} label differences (images and tiles)")
        cells = []
        for cpu in ARM:
            got_path = res / cpu / f"{run}.jsonl"
            if not got_path.exists():
                failures.append(f"{run} {cpu}: no result")
                cells.append("FAIL: no result")
                continue
            ok, st = compare(ref, load(got_path), tol, ties)
            cells.append(cell(ok, st))
            flips += [f"{run} {cpu}: {f}" for f in st["flips"]]
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
        ok, st = compare(load(ref_path), load(got_path), TOLERANCE[fmt],
                         thresholds if fmt in INT8 else None)
        flips += [f"{run} on {cpu}: {f}" for f in st["flips"]]
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
    if flips:
        lines.append(f"Near-tie label flips (accepted for int8, see near_tie): {len(flips)}")
        lines += [f"  - {f}" for f in flips[:50]]
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
