"""Bad entries in folders and bad bundle parts: symbolic links (broken, looping, to
folders), multi-page TIFFs, folders where files should be, decoder messages on stderr.
Every entry that looks like an image gets one result or one error record naming it."""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from bundle_factory import field_image, read_manifest, write_manifest

from edge import cli
from edge.bundle import BundleError, load_bundle
from edge.cli import collect_files, main
from edge.preprocess import ImageReadError, read_image


def classify(capsys, bundle_dir: Path, *paths: Path) -> tuple[int, dict[str, dict], str]:
    """Run ``semedge classify --json``; ``(exit status, {path: record}, stderr)``."""
    code = main(["classify", *map(str, paths), "--bundle", str(bundle_dir),
                 "--target", "x86-cpu", "--json", "--no-progress"])
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    return code, {r["path"]: r for r in records}, err


@pytest.fixture()
def linked_lot(tmp_path) -> Path:
    """``lot/`` with a good image, a link to it, a broken link, a link to itself, a link
    loop to its own folder and a link to a folder outside it."""
    lot, other = tmp_path / "lot", tmp_path / "other"
    lot.mkdir()
    other.mkdir()
    cv2.imwrite(str(lot / "a.png"), field_image(1, 1))
    cv2.imwrite(str(other / "b.png"), field_image(1, 1))
    (lot / "link.png").symlink_to("a.png")
    (lot / "broken.png").symlink_to("missing.png")
    (lot / "self.png").symlink_to("self.png")
    (lot / "loop").symlink_to(".")
    (lot / "outside").symlink_to(other)
    return lot


# ------------------------------------------------------------------ symbolic links


def test_every_linked_entry_gets_a_result_or_an_error(capsys, linked_lot, bundle_dir):
    code, records, _ = classify(capsys, bundle_dir, linked_lot)
    names = {os.path.relpath(p, linked_lot): r for p, r in records.items()}
    assert set(names) == {"a.png", "link.png", "broken.png", "self.png", "loop",
                          "outside/b.png"}
    assert "label" in names["a.png"] and "label" in names["link.png"]
    assert "label" in names["outside/b.png"]  # a linked folder is followed
    assert "broken symbolic link (points to missing.png" in names["broken.png"]["error"]
    assert "symbolic link loop" in names["self.png"]["error"]
    assert "symbolic link loop: leads back to" in names["loop"]["error"]
    assert code == 1


def test_a_folder_linked_twice_is_read_once_with_a_note(capsys, tmp_path, bundle_dir):
    lot, data = tmp_path / "lot", tmp_path / "data"
    data.mkdir()
    cv2.imwrite(str(data / "c.png"), field_image(1, 1))
    (lot / "x").mkdir(parents=True)
    (lot / "first").symlink_to(data)
    (lot / "x" / "second").symlink_to(data)
    code, records, err = classify(capsys, bundle_dir, lot)
    assert list(records) == [str(lot / "first" / "c.png")] and code == 0
    assert f"{lot / 'x' / 'second'}: the folder {lot / 'first'} again" in err


def test_walk_order_is_sorted_depth_first(tmp_path):
    for rel in ("b.png", "a/z.png", "a/b/c.tif", "c.txt", "A.PNG"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in list(collect_files([str(tmp_path)]))]
    assert got == ["A.PNG", "a/b/c.tif", "a/z.png", "b.png"]


def test_a_folder_that_cannot_be_listed_is_an_error_record(capsys, tmp_path, bundle_dir,
                                                            monkeypatch):
    lot = tmp_path / "lot"
    (lot / "locked").mkdir(parents=True)
    cv2.imwrite(str(lot / "a.png"), field_image(1, 1))
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(cli.os, "scandir", scandir)
    code, records, _ = classify(capsys, bundle_dir, lot)
    assert "label" in records[str(lot / "a.png")]
    assert records[str(lot / "locked")]["error"].endswith(
        "locked: cannot list the folder: Permission denied")
    assert code == 1


def test_a_pipe_named_like_an_image_is_an_error_not_a_hang(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert list(collect_files([str(tmp_path)])) == [fifo]
    with pytest.raises(ImageReadError, match="pipe.png: not a regular file"):
        read_image(fifo)


def test_a_folder_named_as_a_file_says_so(tmp_path):
    with pytest.raises(ImageReadError, match="is a folder, not an image file"):
        read_image(tmp_path)


# ------------------------------------------------------------------ multi-page TIFF


def test_multi_page_tiff_warns_that_only_page_one_is_classified(tmp_path, cascade):
    path = tmp_path / "stack.tif"
    pages = [field_image(1, 1, seed=s) for s in range(3)]
    assert cv2.imwritemulti(str(path), pages)
    result = cascade.classify_file(path)
    assert result.ok and result.image_shape == (224, 224)
    assert result.warning == "multi-page file: 3 pages, only page 1 is classified"
    assert result.to_json()["warning"] == result.warning
    single = cascade.classify(pages[0])
    assert result.label == single.label and result.score == single.score


def test_single_page_tiff_has_no_warning(tmp_path, cascade):
    path = tmp_path / "one.tif"
    cv2.imwrite(str(path), field_image(1, 1))
    assert cascade.classify_file(path).warning is None


# ------------------------------------------------------------------ decoder messages


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with_short_iccp(path: Path) -> Path:
    """A valid PNG with a malformed iCCP chunk: libpng prints a bare warning and decodes."""
    data = cv2.imencode(".png", field_image(1, 1))[1].tobytes()
    end_of_ihdr = 8 + 25
    bad = _chunk(b"iCCP", b"bogus\0\0" + zlib.compress(b"x" * 10))
    path.write_bytes(data[:end_of_ihdr] + bad + data[end_of_ihdr:])
    return path


def test_libpng_warning_names_the_file_in_the_record(tmp_path, cascade, capfd):
    path = _png_with_short_iccp(tmp_path / "iccp.png")
    result = cascade.classify_file(path)
    assert result.ok and "libpng warning: iCCP: too short" in (result.warning or "")
    assert "libpng" not in capfd.readouterr().err  # no bare line without a file name


def test_read_image_warns_with_the_file_name(tmp_path):
    path = _png_with_short_iccp(tmp_path / "iccp.png")
    with pytest.warns(UserWarning, match=r"iccp.png: decoder: libpng warning: iCCP"):
        read_image(path)


def test_decoder_error_is_part_of_the_error_record(tmp_path, capfd):
    path = tmp_path / "cut.png"
    data = cv2.imencode(".png", field_image(1, 1))[1].tobytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut.png: cannot decode: .*\(libpng error"):
        read_image(path)
    assert "libpng" not in capfd.readouterr().err


def test_other_stderr_output_during_a_decode_is_kept(tmp_path, capfd, monkeypatch):
    import edge.preprocess as pre

    real = cv2.imdecode

    def noisy(data, flags):
        os.write(2, b"unrelated line\nlibpng warning: made up\n")
        return real(data, flags)

    monkeypatch.setattr(cv2, "imdecode", noisy)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), field_image(1, 1))
    _, notes = pre.read_image_notes(path)
    assert notes == ["decoder: libpng warning: made up"]
    assert capfd.readouterr().err == "unrelated line\n"


def test_good_file_has_no_notes(tmp_path):
    from edge.preprocess import read_image_notes

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.arange(64, dtype=np.uint8).reshape(8, 8))
    assert read_image_notes(path)[1] == []


# ------------------------------------------------------------------ bundle parts


def test_manifest_that_is_a_folder_says_so(tmp_path):
    (tmp_path / "manifest.json").mkdir()
    with pytest.raises(BundleError, match=r"manifest\.json: is a folder, not a file"):
        load_bundle(tmp_path)


def test_model_file_that_is_a_folder_says_so(fresh_bundle):
    (fresh_bundle / "stage2.onnx").unlink()
    (fresh_bundle / "stage2.onnx").mkdir()
    with pytest.raises(BundleError, match=r"stage2\.onnx: is a folder, not a file: listed"):
        load_bundle(fresh_bundle)


def test_bundle_path_that_is_a_file_says_so(tmp_path):
    (tmp_path / "b").write_text("x")
    with pytest.raises(BundleError, match="is a file, not a bundle folder"):
        load_bundle(tmp_path / "b")


@pytest.mark.parametrize("value", [math.inf, -1.0, 0.0, math.nan])
def test_temperature_range_message_matches_what_is_refused(fresh_bundle, value):
    m = read_manifest(fresh_bundle)
    m["stage2"]["temperature"] = value  # json writes Infinity / NaN, which json reads
    write_manifest(fresh_bundle, m)
    with pytest.raises(BundleError) as info:
        load_bundle(fresh_bundle)
    assert "stage2.temperature must be a finite number > 0.0" in info.value.reason
    assert "inf]" not in info.value.reason


@pytest.mark.parametrize("name", ["x" * 300, "a\0b", ""])
def test_model_path_the_os_cannot_use_is_a_bundle_error(fresh_bundle, name):
    m = read_manifest(fresh_bundle)
    m["files"]["stage2"]["onnx"]["path"] = name
    write_manifest(fresh_bundle, m)
    with pytest.raises(BundleError, match=r"files\.stage2\.onnx\.path|cannot read"):
        load_bundle(fresh_bundle)


def test_libjpeg_warning_becomes_a_note(tmp_path, capfd):
    from edge.preprocess import read_image_notes

    data = bytearray(cv2.imencode(".jpg", field_image(1, 1))[1].tobytes())
    sos = data.index(b"\xff\xda")
    path = tmp_path / "noisy.jpg"
    path.write_bytes(bytes(data[:sos]) + b"\0" * 6 + bytes(data[sos:]))  # bytes before SOS
    _, notes = read_image_notes(path)
    assert any("Corrupt JPEG data: 6 extraneous bytes" in n for n in notes), notes
    assert "Corrupt JPEG" not in capfd.readouterr().err
