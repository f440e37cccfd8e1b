"""``docs/classes.md`` is the project's statement of the classes: it lists
``edge.classes.CLASSES`` in order, and every citation of the class list points at it."""

from __future__ import annotations

import re
from pathlib import Path

from edge.classes import CLASSES, UNKNOWN

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "classes.md"
SOURCES = ("edge", "training", "synth", "docs", "scripts", "benchmarks", "README.md")


def test_the_class_table_lists_the_classes_in_model_order() -> None:
    rows = re.findall(r"^\| (\d) \| `(\w+)` \|", DOC.read_text(encoding="utf-8"), re.M)
    assert [(int(i), name) for i, name in rows] == list(enumerate(CLASSES))


def test_unknown_and_other_defect_are_explained() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"`{UNKNOWN}`" in text and "`other_defect`" in text


def test_every_citation_of_the_class_list_points_at_docs_classes_md() -> None:
    files = [p for name in SOURCES for p in ([ROOT / name] if (ROOT / name).is_file()
                                              else (ROOT / name).rglob("*"))
             if p.is_file() and p.suffix in (".py", ".md", ".pyx", ".toml", "")]
    bad = [f"{p.relative_to(ROOT)}:{n}" for p in files
           for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace")
                                    .splitlines(), start=1)
           if re.search(r"(?<!docs/)\bCLASSES\.md", line)]
    assert not bad, "cite docs/classes.md instead of CLASSES.md:\n" + "\n".join(bad)
