"""Ingestion of real folders: layouts, formats and sizes, the pre-flight report.

Small folders written here (8- and 16-bit, PNG/TIFF/JPEG, odd sizes); no training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from conftest import draw  # noqa: E402

from edge import preprocess  # noqa: E402
from training.data import image_to_tile  # noqa: E402
from training.ingest import (  # noqa: E402
    DEFECTIVE,
    LeakageError,
    check_leakage,
    layout_of,
    scan,
)


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def _image(rng, label, shape=(96, 96), bits=8):
    img = draw(label if label in ("normal", "open", "short", "void", "ler", "crack",
                                  "malformed_via") else "open", rng, max(shape))
    img = cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return (img.astype(np.uint16) * 257) if bits == 16 else img


def binary_folder(root: Path, n: int = 6, seed: int = 0) -> Path:
    """normal/defective, mixed 8/16-bit PNG/TIFF/JPEG, odd sizes."""
    rng = np.random.default_rng(seed)
    shapes = [(97, 150), (260, 301), (224, 224), (64, 80), (512, 384), (300, 300)]
    for label in ("normal", "defective"):
        for i in range(n):
            shape = shapes[i % len(shapes)]
            bits = 16 if i % 2 else 8
            ext = (".tif", ".png", ".jpg")[i % 3] if bits == 8 else (".tif", ".png")[i % 2]
            _write(root / label / f"{label}_{i}{ext}",
                   _image(rng, "normal" if label == "normal" else "open", shape, bits))
    return root


def defect_folder(root: Path, n: int = 5, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    for label in ("open", "short", "void"):
        for i in range(n):
            _write(root / label / f"{label}_{i}.png", draw(label, rng, 96))
    return root


# ------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("labels, stages", [
    (["normal", "ler", "open", "short", "void", "malformed_via", "crack", "other_defect"],
     ("stage1", "stage2", "monolithic")),
    (["normal", "defective"], ("stage1",)),
    (["normal", "open"], ("stage1",)),
    (["open", "short", "void"], ("stage2",)),
    (["open"], ()),
    (["normal"], ()),
])
def test_the_layout_decides_what_is_trained(labels, stages):
    assert layout_of(labels).stages == stages


def test_the_full_layout_is_read_with_other_defect(tiny_folder):
    report = scan(tiny_folder)
    assert report.ok, report.lines()
    assert report.layout.name == "full"
    assert report.counts()["other_defect"] == 12
    assert len(set(report.sha256)) == len(report.paths)


def test_a_binary_folder_of_mixed_formats_trains_stage1_only(tmp_path):
    report = scan(binary_folder(tmp_path / "b"))
    assert report.ok, report.lines()
    assert report.layout.stages == ("stage1",)
    assert set(report.dtypes) == {"uint8", "uint16"}
    assert report.counts() == {"normal": 6, "defective": 6}
    assert (report.label_array() == DEFECTIVE).sum() == 6
    text = "\n".join(report.lines())
    assert "upscaled" in text and "downscaled" in text and "16-bit 6" in text


def test_a_defect_only_folder_trains_stage2_only(tmp_path):
    report = scan(defect_folder(tmp_path / "d"))
    assert report.ok and report.layout.stages == ("stage2",)


def test_csv_labels_replace_folders(tmp_path):
    rng = np.random.default_rng(3)
    rows = ["path,label"]
    for i, label in enumerate(["normal", "normal", "defective", "open", "defective"]):
        _write(tmp_path / "imgs" / f"{i}.png", draw("open" if label != "normal" else "normal",
                                                     rng, 80))
        rows.append(f"imgs/{i}.png,{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    report = scan(tmp_path, labels_csv=tmp_path / "labels.csv")
    assert report.ok, report.lines()
    assert report.counts() == {"normal": 2, "open": 1, "defective": 2}
    assert report.layout.stages == ("stage1",)


def test_csv_problems_are_reported(tmp_path):
    _write(tmp_path / "a.png", draw("normal", np.random.default_rng(0), 64))
    (tmp_path / "labels.csv").write_text("a.png,normal\na.png,normal\nmissing.png,open\n"
                                         "a.png,scratch\n")
    report = scan(tmp_path, labels_csv=tmp_path / "labels.csv")
    text = "\n".join(report.errors)
    assert "listed twice" in text and "missing.png" in text and "unknown label 'scratch'" in text


# ------------------------------------------------------------------ images → tiles


@pytest.mark.parametrize("shape", [(97, 150), (224, 224), (260, 301), (512, 384)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_any_size_and_depth_gives_one_float32_tile(shape, dtype):
    rng = np.random.default_rng(0)
    image = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    tile = image_to_tile(image, size=224)
    assert tile.shape == (1, 224, 224) and tile.dtype == np.float32


def test_a_square_large_image_is_exactly_what_the_edge_tiles_with_large_image_resize():
    image = np.random.default_rng(1).integers(0, 65535, (300, 300), dtype=np.uint16)
    edge_tiles = preprocess.tile(preprocess.downscale_large(image, 224), size=224, stride=224,
                                 pad="reflect")
    assert edge_tiles.grid == (1, 1)
    np.testing.assert_array_equal(image_to_tile(image, size=224), edge_tiles.batch[0])


# ------------------------------------------------------------ malformed folders


def _problems(root: Path) -> str:
    report = scan(root)
    assert not report.ok
    return "\n".join(report.lines())


def test_unknown_folder_names_are_errors(tmp_path):
    root = binary_folder(tmp_path / "u", n=2)
    _write(root / "scratches" / "x.png", draw("open", np.random.default_rng(0), 64))
    assert "scratches: unknown label folder" in _problems(root)


def test_empty_classes_are_errors(tmp_path):
    root = binary_folder(tmp_path / "e", n=2)
    (root / "open").mkdir()
    assert "open: empty class" in _problems(root)


def test_duplicates_are_found_by_hash_across_labels(tmp_path):
    root = binary_folder(tmp_path / "dup", n=3)
    src = next((root / "normal").glob("*.png"))
    (root / "defective" / "copy.png").write_bytes(src.read_bytes())
    text = _problems(root)
    assert "duplicate image" in text and "conflicting labels defective, normal" in text
    assert "--drop-duplicates" in text  # the refusal names the way out


def test_drop_duplicates_keeps_one_copy_and_drops_conflicts(tmp_path):
    root = binary_folder(tmp_path / "dup", n=3)
    first, second = sorted((root / "normal").iterdir())[:2]
    copy = root / "normal" / f"zz_copy{first.suffix}"  # same label: one copy stays
    conflict = root / "defective" / f"conflict{second.suffix}"  # two labels: both go
    copy.write_bytes(first.read_bytes())
    conflict.write_bytes(second.read_bytes())
    refused = scan(root)
    found = scan(root, drop_duplicates=True)
    assert len(refused.errors) == 2 and found.ok
    assert len(found.paths) == len(refused.paths) - 3
    assert str(first) in found.paths and str(copy) not in found.paths
    assert str(second) not in found.paths and str(conflict) not in found.paths
    text = "\n".join(found.lines())
    assert f"{copy}: a copy of {first} (label normal); kept {first}" in text
    assert f"{conflict}, {second}: the same image with conflicting labels defective, " \
        "normal; all copies dropped" in text
    assert len(set(found.sha256)) == len(found.sha256)


def test_unreadable_and_foreign_files_are_errors_never_skipped(tmp_path):
    root = binary_folder(tmp_path / "bad", n=2)
    (root / "normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "normal" / "empty.tif").write_bytes(b"")
    (root / "defective" / "notes.txt").write_text("hello")
    text = _problems(root)
    assert "broken.png" in text and "empty.tif" in text and "notes.txt" in text


def test_images_outside_label_folders_are_errors(tmp_path):
    root = binary_folder(tmp_path / "loose", n=2)
    _write(root / "stray.png", draw("normal", np.random.default_rng(0), 64))
    assert "outside label folders" in _problems(root)


def test_semedge_train_exits_2_before_training(tmp_path, capsys):
    from training.cli import add_train_arguments, run_train

    root = binary_folder(tmp_path / "x", n=2)
    _write(root / "scratches" / "x.png", draw("open", np.random.default_rng(0), 64))
    (root / "normal" / "broken.png").write_bytes(b"garbage")
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    out = tmp_path / "bundle"
    assert run_train(parser.parse_args(["--data", str(root), "--out", str(out),
                                        "--quiet"])) == 2
    err = capsys.readouterr().err
    assert "scratches" in err and "broken.png" in err and "nothing was trained" in err
    assert not out.exists()


def test_defects_without_normal_and_without_a_source_bundle_are_refused(tmp_path, capsys):
    from training.cli import add_train_arguments, run_train

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    rc = run_train(parser.parse_args(["--data", str(defect_folder(tmp_path / "p", n=2)),
                                      "--out", str(tmp_path / "o"), "--quiet"]))
    assert rc == 2
    assert "--complete-from" in capsys.readouterr().err


def test_leakage_is_detected_by_hash():
    check_leakage(["a", "b"], ["c"])
    with pytest.raises(LeakageError, match="1 image"):
        check_leakage(["a", "b"], ["c", "b"])
