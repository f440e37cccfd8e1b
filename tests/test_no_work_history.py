"""Docs, code and messages describe the product, dated by calendar date and commit.

Results are dated ``2026-11-27`` or ``(2026-11-27, 8157d9c)``, never by the work that
produced them ("the fifth session", "shipped in the eighteenth", "issue #5", "#5's
targets", "the training issue"). This scans every tracked text file for such references
and names each ``file:line``.

ONNX Runtime / TFLite sessions are product terms and stay: "InferenceSession",
"session.run", "two sessions in one process", "every session agrees" do not match.
Upstream bug references such as "onnx2tf #683" do not match either.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SELF = Path(__file__).resolve()

TEXT_SUFFIXES = {".md", ".rst", ".txt", ".py", ".pyx", ".pxd", ".pyi", ".c", ".h", ".cc",
                 ".cpp", ".hpp", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".sh", ".json"}
TEXT_DIRS = ("scripts/",)  # extension-less scripts
SKIP_DIRS = {".git", ".venv", "venv", "env", "build", "dist", "runs", "__pycache__",
             ".pytest_cache", ".ruff_cache", ".benchmarks", "node_modules", "shared"}
MAX_BYTES = 2_000_000

_ORD = ("first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|"
        "twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|"
        "nineteenth|twentieth|thirtieth|fortieth")
_ORDINAL = rf"(?:(?:twenty|thirty|forty)[- ](?:{_ORD})|{_ORD}|\d+(?:st|nd|rd|th))"

PATTERNS = [
    # "the fifth session", "fifth-session builds", "thirteenth/fourteenth sessions"
    (rf"\b{_ORDINAL}[-\s]+sessions?\b", "session ordinal"),
    # "**shipped in the seventeenth**", "(shipped until the eleventh)": an ordinal that
    # ends the phrase ("after the first call", "the second seed" do not match)
    (rf"\b(?:shipped|measured|built|rebuilt|replaced it|since|until|before|after)"
     rf"(?:\s+in)?\s+the\s+{_ORDINAL}(?=\s*[,.;:)*\]]|\s*\Z)", "session ordinal"),
    # "the eleventh's 0.07"
    (rf"\bthe\s+{_ORDINAL}'s\b", "session ordinal"),
    # "this session", "a later session", "the previous session's" (work, not a runtime)
    (r"\b(?:this|that|last|previous|next|later|earlier)\s+sessions?\b"
     r"(?!\s*(?:object|options|config|\.run|'s\s+(?:inputs?|outputs?|providers?)))",
     "work session"),
    # "issue #5", "PR #12", "#5's targets", "the lever for #5 and #10"
    (r"\b(?:issues?|PRs?|pull requests?|tickets?)\s*#\d+", "issue number"),
    (r"(?<![\w#])#\d+'s\b", "issue number"),
    (r"\b(?:for|of|in|see|and|or|per|from|under|by|with)\s+#\d+\b", "issue number"),
    # "the training issue's rule", "the gate issue", "in its own issue"
    (r"\bthe\s+issue's\b", "issue"),
    (r"\bthe\s+(?:training|gate|runtime|foundation|real-sem|elpv|tflite|arm|synth|bench|"
     r"benchmark|preprocessing|perf|performance|eval|evaluation)\s+issue\b", "issue"),
    (r"\b(?:its|their|an?)\s+own\s+issue\b", "issue"),
]
_COMPILED = [(re.compile(p, re.IGNORECASE), why) for p, why in PATTERNS]


def _tracked_files() -> list[Path]:
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        try:
            out = subprocess.run([git, "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                 check=True, timeout=60).stdout
            return [ROOT / p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]
        except (OSError, subprocess.SubprocessError):
            pass
    files = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
            continue
        if path.is_file():
            files.append(path)
    return files


def _is_text(path: Path) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return path.suffix.lower() in TEXT_SUFFIXES or (
        rel.startswith(TEXT_DIRS) and "." not in path.name)


def find_work_history(text: str) -> list[tuple[int, str, str]]:
    """``(line number, matched text, kind)`` for each work-history reference in ``text``.

    Matched on the whole text, so a phrase broken across two lines is found too.
    """
    hits = []
    for rx, why in _COMPILED:
        for m in rx.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            hits.append((line, " ".join(m.group(0).split()), why))
    return sorted(set(hits))


def scan() -> list[str]:
    found = []
    for path in _tracked_files():
        if path.resolve() == SELF or not path.is_file() or not _is_text(path):
            continue
        if path.stat().st_size > MAX_BYTES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        rel = path.relative_to(ROOT).as_posix()
        found += [f"{rel}:{line}: {what!r} ({why})" for line, what, why in
                  find_work_history(text)]
    return found


def test_no_work_history_in_tracked_files():
    found = scan()
    assert not found, ("date results by calendar date and commit, not by work history:\n"
                       + "\n".join(found))


def test_pattern_flags_work_history():
    for text in ["not shipped (fifth session): stage 2", "shipped in the seventeenth",
                 "the twenty-first session measured", "thirteenth/fourteenth sessions",
                 "the two fifth-session builds", "held back until this session",
                 "C replaced it in the eighteenth, below", "(shipped until the eleventh)",
                 "the eleventh's 0.07", "the training issue's rule", "see issue #5",
                 "#5's in-distribution targets", "the lever for #5 and #10 alike",
                 "in its own issue", "The issue's numbers", "since the eighteenth\nsession"]:
        assert find_work_history(text), text


def test_pattern_spares_the_product():
    for text in ["ort.InferenceSession(path, options)", "session.run(None, feeds)",
                 "Sessions are configured for small boards", "both sessions created",
                 "two sessions in one process do not steal each other's cores",
                 "Every session agrees with ONNX fp32 on all 16 tiles",
                 "Time every session round-robin", "@pytest.fixture(scope=\"session\")",
                 "the 10th / 50th / 90th percentile", "onnx2tf #683/#942, the source",
                 "the Edge TPU would run on the CPU (edgetpu #342)", "LOGISTIC#4",
                 "the first partial run below", "the second seed", "one session per stage",
                 "the session's inputs", "seed 1 (2026-11-27, 44f05e2)",
                 "the first round landed at 0.779", "after the first call",
                 "since the first `synth`", "threads could issue their collectives"]:
        assert not find_work_history(text), text
