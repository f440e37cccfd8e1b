"""classify_files with bad files, the memory guard, no network, light imports."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from bundle_factory import field_image

import edge

REPO = Path(__file__).resolve().parents[2]


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width × height`` but carries almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture()
def files(tmp_path) -> dict[str, Path]:
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), field_image(2, 2, [(0, 1)]))
    good16 = tmp_path / "good16.tif"
    cv2.imwrite(str(good16), field_image(2, 3, dtype=np.uint16))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:40] + b"garbage" * 20)
    truncated = tmp_path / "truncated.tif"
    full = tmp_path / "full.tif"
    cv2.imwrite(str(full), field_image(4, 4))
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    rgb = tmp_path / "rgb.png"
    colour = np.dstack([field_image(1, 1, seed=s) for s in range(3)])
    cv2.imwrite(str(rgb), colour)
    huge = tmp_path / "huge.png"
    _png_header_only(huge, 20000, 20000)
    return {"good": good, "good16": good16, "corrupt": corrupt, "truncated": truncated,
            "empty": empty, "missing": tmp_path / "missing.png", "rgb": rgb, "huge": huge}


def test_bad_files_give_error_results_and_the_stream_goes_on(cascade, files):
    order = ["good", "corrupt", "truncated", "empty", "missing", "huge", "good16"]
    results = list(cascade.classify_files([files[k] for k in order]))
    assert [r.path for r in results] == [str(files[k]) for k in order]
    by = dict(zip(order, results))
    assert by["good"].ok and by["good"].label == "short"
    assert by["good16"].ok and by["good16"].label == "normal"
    for key in ("corrupt", "truncated", "empty", "missing", "huge"):
        assert not by[key].ok, key
        assert str(files[key]) in by[key].error
        assert by[key].to_json() == {"path": str(files[key]), "error": by[key].error}
    assert "0 bytes" in by["empty"].error
    assert "400,000,000 pixels" in by["huge"].error
    assert set(by["good"].timings_ms) == {"read", "tile", "stage1", "stage2", "total"}


def test_colour_file_is_read_as_luminance_with_a_warning(cascade, files):
    (result,) = cascade.classify_files([files["rgb"]])
    assert result.ok and "colour image converted to luminance" in result.warning


def test_results_stream_lazily(cascade, files):
    stream = cascade.classify_files(iter([files["good"], files["good16"]]))
    first = next(stream)
    assert first.path == str(files["good"])
    stream.close()  # stopping early shuts the reader thread down


def test_huge_header_is_refused_before_allocation(bundle_dir, files):
    """In a fresh process: the error arrives and peak memory stays far below 400 MB."""
    code = textwrap.dedent(f"""
        import edge
        from edge.profiles import load_profile
        def peak_kb():  # this process's own high-water mark (ru_maxrss starts at the parent's)
            with open("/proc/self/status") as fh:
                return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
        c = edge.load({str(bundle_dir)!r}, target="x86-cpu")
        before = peak_kb()
        (r,) = c.classify_files([{str(files["huge"])!r}])
        after = peak_kb()
        print(r.error)
        print((after - before) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120, check=True).stdout.splitlines()
    assert "over the limit" in out[0]
    assert int(out[1]) < 50, f"peak memory grew by {out[1]} MB"


def test_the_runtime_opens_no_network_connection(bundle_dir, files, cpu_profile, monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    for name in ("connect", "connect_ex", "sendto", "sendmsg"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    cascade = edge.load(bundle_dir, target=cpu_profile)
    cascade.classify(field_image(3, 3, [(1, 1)]))
    list(cascade.classify_files([files["good"], files["corrupt"]]))
    edge.load(bundle_dir, target="auto").classify(field_image(1, 1))
    assert attempts == []


def test_edge_imports_no_workstation_code():
    code = ("import edge, edge.cli, edge.cascade, edge.bundle, edge.profiles, edge.overlay, "
            "edge._workstation, sys; "
            "bad = [m for m in ('torch', 'onnx', 'synth', 'training', 'onnx2tf') "
            "if m in sys.modules]; print(json.dumps(bad))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                         text=True, cwd=REPO, timeout=120, check=True)
    assert json.loads(out.stdout) == []
