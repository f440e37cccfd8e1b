"""The runtime writes nothing under HOME and sends nothing off the machine.

Each check runs in a fresh process with ``ORT_DISABLE_TELEMETRY`` removed from its
environment, so only the runtime's own guard (``edge/__init__.py``) can keep onnxruntime's
telemetry off.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CLI = "import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))"
CLASSIFY_SAMPLES = (CLI, "classify", "--samples", "--json", "--no-progress")
LIBRARY = ("import edge; from edge.cli import samples_dir; "
           "c = edge.load(); r = list(c.classify_files(sorted(samples_dir().glob('*.png')))); "
           "assert all(x.ok for x in r), r")
BACKEND_MODULE = "import edge.backends.onnxruntime_backend"


def _env(home: Path) -> dict[str, str]:
    """This process's environment with a fresh HOME and no telemetry or XDG settings."""
    env = {k: v for k, v in os.environ.items()
           if k != "ORT_DISABLE_TELEMETRY" and not k.startswith("XDG_")}
    env["HOME"] = str(home)
    return env


def _python(args: tuple[str, ...], home: Path, *, prefix: tuple[str, ...] = (),
            timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-c", *args], cwd=REPO, env=_env(home),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args", [CLASSIFY_SAMPLES, (LIBRARY,), (BACKEND_MODULE,)],
                         ids=["cli-classify", "import-edge", "backend-module"])
def test_nothing_is_written_under_home(tmp_path, args):
    home = tmp_path / "home"
    home.mkdir()
    done = _python(args, home)
    assert done.returncode == 0, done.stderr
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], f"the runtime wrote under HOME: {written}"


# A run of this length reaches onnxruntime's first telemetry DNS query (measured: ~9 s
# after start) when its telemetry is on; the loop is bounded by time, not by image
# count, so a faster machine does not end the run before that point.
RUN_SECONDS = 14
LONG_CLASSIFY = (
    "import sys, time, os; from edge.cli import main; "
    f"end = time.monotonic() + {RUN_SECONDS}; "
    "sys.stdout = open(os.devnull, 'w'); "
    "codes = [main(['classify', '--samples', '--json', '--no-progress']) "
    "for _ in iter(lambda: time.monotonic() < end, False)]; "
    "sys.exit(max(codes))"
)
_INET = re.compile(r'sa_family=AF_INET6?, .*?(?:inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)")')


def _remote_addresses(trace: str) -> list[str]:
    """Non-loopback IPv4/IPv6 addresses in ``connect``/``sendto`` lines of an strace log."""
    remote = []
    for line in trace.splitlines():
        if "connect(" not in line and "sendto(" not in line and "sendmsg(" not in line:
            continue
        for v4, v6 in _INET.findall(line):
            address = ipaddress.ip_address(v4 or v6)
            if not address.is_loopback:
                remote.append(line.strip())
    return remote


def test_remote_addresses_are_found_in_an_strace_log():
    trace = "\n".join([
        '12 connect(8, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1',
        '12 connect(9, {sa_family=AF_INET, sin_port=htons(53), '
        'sin_addr=inet_addr("10.255.255.53")}, 16) = 0',
        '12 connect(9, {sa_family=AF_INET, sin_port=htons(80), '
        'sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        '12 connect(9, {sa_family=AF_INET6, sin6_port=htons(53), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
        '12 connect(9, {sa_family=AF_INET6, sin6_port=htons(53), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
    ])
    found = _remote_addresses(trace)
    assert len(found) == 2
    assert "10.255.255.53" in found[0] and "2001:db8::1" in found[1]


def test_a_long_classify_run_sends_nothing_off_the_machine(tmp_path):
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace not installed: apt-get install -y strace to run this check")
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "strace.log"
    done = _python((LONG_CLASSIFY,), home, timeout=600,
                   prefix=(strace, "-f", "-e", "trace=connect,sendto,sendmsg", "-o", str(log)))
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip().splitlines()[0]}")
    assert done.returncode == 0, done.stderr[-2000:]
    remote = _remote_addresses(log.read_text(errors="replace"))
    assert remote == [], "network traffic:\n" + "\n".join(remote[:10])
