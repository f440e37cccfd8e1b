"""Bad input to the device runtime: odd file names, overlay folders that would destroy
data, thin and blank images, bad settings. Each gives one clear answer and never a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from bundle_factory import field_image

import edge
from edge.cli import main

REPO = Path(__file__).resolve().parents[2]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def classify(capsys, bundle_dir: Path, *argv: str) -> tuple[int, str, str]:
    return run(capsys, "classify", *argv, "--bundle", str(bundle_dir), "--target", "x86-cpu",
               "--json", "--no-progress")


@pytest.fixture()
def lot(tmp_path) -> Path:
    folder = tmp_path / "lot"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), field_image(2, 2, [(1, 1)]))
    cv2.imwrite(str(folder / "b.png"), field_image(1, 1))
    return folder


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------- overlays


def test_overlay_of_a_file_whose_name_is_not_utf8(tmp_path, bundle_dir):
    """OpenCV's writer crashed the process (SIGSEGV) on such a name; run it apart."""
    folder = tmp_path / "lot"
    folder.mkdir()
    name = os.fsdecode(b"die\xff7.png")  # byte 0xff: not UTF-8 (a surrogate escape here)
    try:
        cv2.imencode(".png", field_image(2, 2, [(0, 0)]))[1].tofile(str(folder / name))
    except (OSError, UnicodeEncodeError) as err:
        pytest.skip(f"this file system refuses a non-UTF-8 name: {err}")
    out_dir = tmp_path / "out"
    code = ("import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run(
        [sys.executable, "-c", code, "classify", str(folder), "--overlay", str(out_dir),
         "--bundle", str(bundle_dir), "--target", "x86-cpu", "--json", "--no-progress"],
        cwd=REPO, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    written = list(out_dir.iterdir())
    assert [os.fsencode(p.name) for p in written] == [b"die\xff7.png"]
    overlay = cv2.imdecode(np.fromfile(written[0], np.uint8), cv2.IMREAD_UNCHANGED)
    assert overlay.shape == (448, 448, 3)


def test_overlay_into_the_input_folder_is_refused_before_any_work(capsys, lot, bundle_dir):
    before = {p.name: p.read_bytes() for p in lot.iterdir()}
    code, out, err = classify(capsys, bundle_dir, str(lot), "--overlay", str(lot))
    assert code == 2 and out == ""
    line = _one_line(err)
    assert "would overwrite the input" in line and str(lot / "a.png") in line
    assert {p.name: p.read_bytes() for p in lot.iterdir()} == before


def test_overlay_named_after_one_input_file_is_refused(capsys, lot, bundle_dir, tmp_path):
    """Only the file given is an input; the overlay folder holds it: refused too."""
    original = (lot / "b.png").read_bytes()
    code, out, err = classify(capsys, bundle_dir, str(lot / "b.png"), "--overlay", str(lot))
    assert code == 2 and out == "" and "would overwrite the input" in _one_line(err)
    assert (lot / "b.png").read_bytes() == original


def test_existing_files_in_the_overlay_folder_are_kept(capsys, lot, bundle_dir, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "a.png").write_bytes(b"an engineer's own file")
    code, out, err = classify(capsys, bundle_dir, str(lot), "--overlay", str(out_dir))
    assert code == 0 and len(out.splitlines()) == 2
    assert (out_dir / "a.png").read_bytes() == b"an engineer's own file"
    assert sorted(p.name for p in out_dir.iterdir()) == ["a-1.png", "a.png", "b.png"]
    assert cv2.imread(str(out_dir / "a-1.png")).shape == (448, 448, 3)
    assert "1 overlay names are taken" in err and "kept" in err


def test_a_rerun_into_the_same_overlay_folder_replaces_nothing(capsys, lot, bundle_dir,
                                                               tmp_path):
    out_dir = tmp_path / "out"
    classify(capsys, bundle_dir, str(lot), "--overlay", str(out_dir))
    first = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    code, _, _ = classify(capsys, bundle_dir, str(lot), "--overlay", str(out_dir))
    assert code == 0
    now = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    assert sorted(now) == ["a-1.png", "a.png", "b-1.png", "b.png"]
    assert {k: now[k] for k in first} == first


@pytest.mark.parametrize("where", ["file", "below-a-file"])
def test_overlay_path_that_is_a_file_is_one_error_before_any_work(capsys, lot, bundle_dir,
                                                                  tmp_path, where):
    plain = tmp_path / "report.txt"
    plain.write_text("keep me")
    target = plain if where == "file" else plain / "overlays"
    code, out, err = classify(capsys, bundle_dir, str(lot), "--overlay", str(target))
    assert code == 2 and out == ""
    line = _one_line(err)
    assert line.startswith("semedge: error: --overlay") and str(plain) in line
    assert "not a folder" in line
    assert plain.read_text() == "keep me"


# ---------------------------------------------------------------- settings and usage


@pytest.mark.parametrize("value", ["abc", "0", "-1", ""])
def test_bad_max_pixels_is_one_setup_error(capsys, monkeypatch, lot, bundle_dir, value):
    monkeypatch.setenv("SEMEDGE_MAX_PIXELS", value)
    code, out, err = classify(capsys, bundle_dir, str(lot))
    assert code == 2 and out == ""
    assert "SEMEDGE_MAX_PIXELS must be a positive integer" in _one_line(err)
    with pytest.raises(ValueError, match="SEMEDGE_MAX_PIXELS"):
        edge.load(bundle_dir, target="x86-cpu")


def test_max_pixels_setting_still_applies(capsys, monkeypatch, lot, bundle_dir):
    monkeypatch.setenv("SEMEDGE_MAX_PIXELS", str(224 * 224))
    code, out, _ = classify(capsys, bundle_dir, str(lot))
    assert code == 1  # a.png (448²) is over the limit, b.png (224²) is not
    assert '"error"' in out.splitlines()[0] and '"label"' in out.splitlines()[1]


def test_unknown_option_shows_the_subcommand_usage(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["classify", "--bogus"])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert "usage: semedge classify" in err and "unrecognized arguments: --bogus" in err


def test_unknown_option_before_the_command_shows_the_top_usage(capsys):
    with pytest.raises(SystemExit):
        main(["--bogus", "info"])
    err = capsys.readouterr().err
    assert "usage: semedge [" in err and "semedge: error: unrecognized arguments: --bogus" in err


# ------------------------------------------------------------------- thin images

THIN = """
import resource, sys
import cv2, numpy as np
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a leak fails, not the box
import edge
from edge import preprocess
def peak_kb():  # this process's own high-water mark: ru_maxrss would start at the parent's
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
def grown(before):
    return (peak_kb() - before) // 1024
cascade = edge.load(sys.argv[1], target="x86-cpu")
before = peak_kb()
(result,) = cascade.classify_files([sys.argv[2]])
print(result.error)
print(grown(before))
before = peak_kb()
up = preprocess.prepare_small(cv2.imread(sys.argv[3], cv2.IMREAD_UNCHANGED), 224)
print(up.shape, grown(before))
print(peak_kb() // 1024)
"""


def test_thin_image_is_an_error_record_in_little_memory(tmp_path, bundle_dir):
    """1×8000 px would be upscaled to 224×1,792,000 (it took ~9.6 GB); it is refused by
    its aspect ratio, and the upscaling itself needs little beyond its output."""
    thin, long = tmp_path / "thin.png", tmp_path / "long.png"
    cv2.imwrite(str(thin), (np.arange(8000) % 256).astype(np.uint8)[None, :])
    cv2.imwrite(str(long), (np.arange(1000) % 256).astype(np.uint8)[None, :])
    done = subprocess.run([sys.executable, "-c", THIN, str(bundle_dir), str(thin), str(long)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    error, grown, upscaled, peak = done.stdout.splitlines()
    assert error.startswith(f"{thin}: image is 8000×1 px, too thin") and "64:1" in error
    assert int(grown) < 20, f"refusing the thin image grew the peak by {grown} MB"
    # 1×1000 → 224×224000 uint8 (48 MB) when upscaled without the limit (training does)
    shape, grown_up = upscaled.rsplit(" ", 1)
    assert shape == "(224, 224000)" and int(grown_up) < 120, f"grew {grown_up} MB"  # was ~1.2 GB
    assert int(peak) < 300, f"peak RSS {peak} MB"


@pytest.mark.parametrize(("shape", "ok"), [((3, 192), True), ((192, 3), True),
                                           ((3, 195), False), ((195, 3), False)])
def test_aspect_limit_is_64_to_1_after_upscaling(cascade, shape, ok):
    image = field_image(1, 1, shape=shape)
    if ok:
        result = cascade.classify(image)
        assert result.image_shape == shape and len(result.tile_labels) == 64
    else:
        with pytest.raises(ValueError, match="too thin to classify"):
            cascade.classify(image)


def test_a_thin_file_does_not_stop_the_batch(cascade, tmp_path):
    thin, good = tmp_path / "thin.png", tmp_path / "good.png"
    cv2.imwrite(str(thin), np.full((2, 500), 9, np.uint8))
    cv2.imwrite(str(good), field_image(2, 2, [(1, 1)]))
    results = list(cascade.classify_files([thin, good]))
    assert str(thin) in results[0].error and "too thin" in results[0].error
    assert results[1].ok and results[1].label == "short"


# ------------------------------------------------------------ images with no structure


def _noisy_constant() -> np.ndarray:
    """99.5 % one grey level, a few outliers: the 1st and 99th percentiles are equal."""
    image = np.full((448, 448), 120, np.uint8)
    image.flat[::200] = 255
    return image


@pytest.mark.parametrize("image", [
    np.zeros((300, 300), np.uint8),
    np.full((224, 224), 40000, np.uint16),
    np.full((1, 1), 77, np.uint8),
    _noisy_constant(),
], ids=["black", "constant-uint16", "one-pixel", "constant-with-outliers"])
def test_image_without_structure_is_unknown_with_a_warning(cascade, image):
    result = cascade.classify(image)
    assert result.label == "unknown" and result.score == 0.0
    assert result.warning.startswith("no structure:") and "not classified" in result.warning
    assert set(result.tile_labels) == {"unknown"} and not result.flagged.any()
    assert np.isnan(result.stage1_scores).all() and result.decisive_tile is None
    obj = result.to_json()
    assert obj["label"] == "unknown" and obj["warning"] == result.warning
    assert json.loads(json.dumps(obj, allow_nan=False)) == obj  # strict JSON


def test_blank_image_never_reaches_the_models(bundle_dir, cpu_profile):
    cascade = edge.load(bundle_dir, target=cpu_profile)

    class Refuse:
        describe = cascade.stage1.describe

        def run(self, batch):
            raise AssertionError("a model ran on a blank image")

    cascade.stage1 = cascade.stage2 = Refuse()
    assert cascade.classify(np.zeros((500, 700), np.uint8)).label == "unknown"


def test_shipped_bundle_answers_unknown_for_a_black_image():
    result = edge.load(target="x86-cpu").classify(np.zeros((1024, 1024), np.uint8))
    assert result.label == "unknown" and result.warning is not None


def test_an_image_with_structure_has_no_warning(cascade):
    result = cascade.classify(field_image(2, 2, [(1, 1)]))
    assert result.warning is None and "warning" not in result.to_json()


def test_cli_reports_the_warning(capsys, bundle_dir, tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((224, 224), np.uint8))
    code, out, _ = classify(capsys, bundle_dir, str(blank))
    obj = json.loads(out)
    assert code == 0 and obj["label"] == "unknown" and obj["warning"].startswith("no structure")
    code, out, _ = run(capsys, "classify", str(blank), "--bundle", str(bundle_dir),
                       "--target", "x86-cpu")
    assert "(no" in out and "structure)" in out and "unknown: 1" in out  # cell may wrap
