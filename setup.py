"""Build the Cython kernels in ``csrc/`` into extension modules of the ``edge`` package.

OpenMP is used when the compiler supports it (``SEMEDGE_OPENMP=0`` turns it off); the
kernels fall back to one thread without it. ``targets/*.toml`` ship inside the wheel as
``edge/targets/``. ``SEMEDGE_SANITIZE=1`` builds the kernels with AddressSanitizer and
UndefinedBehaviorSanitizer (GCC/Clang; for ``scripts/sanitize-check``, never for a wheel).

``SEMEDGE_WHEEL=device`` builds the device wheel: the ``edge`` package alone (no
``training``, no ``synth``) with the default bundle's int8 models and a manifest listing
only them (``edge/device_bundle.py``); the fp32 models, PyTorch checkpoints,
``splits.json`` and report stay in the full build, which ``semedge train --init default``
reads on a workstation.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
FLAVOUR = os.environ.get("SEMEDGE_WHEEL", "full")
if FLAVOUR not in ("full", "device"):
    sys.exit(f"SEMEDGE_WHEEL must be 'full' or 'device', not {FLAVOUR!r}")
DEVICE = FLAVOUR == "device"


def _compiler_supports_openmp() -> bool:
    if os.environ.get("SEMEDGE_OPENMP", "1") == "0" or sys.platform == "win32":
        return False
    from distutils.ccompiler import new_compiler  # setuptools vendors it
    from distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "omp.c"
        src.write_text("#include <omp.h>\nint main(void){return omp_get_max_threads()>0?0:1;}\n")
        try:
            objs = compiler.compile([str(src)], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objs, str(Path(tmp) / "omp"), extra_postargs=["-fopenmp"])
        except Exception:  # noqa: BLE001 - any compile or link failure means: no OpenMP here
            return False
    return True


OPENMP = _compiler_supports_openmp()
omp_flags = ["-fopenmp"] if OPENMP else []
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
SANITIZE = os.environ.get("SEMEDGE_SANITIZE", "0") == "1"
sanitize_flags = (["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                   "-fno-omit-frame-pointer", "-g"] if SANITIZE else [])
# -O1: exact sanitizer reports; -g0: no debug info in a wheel (Python's own CFLAGS carry
# -g, which made each kernel ~1.3 MB instead of ~0.2 MB)
opt_flags = ["-O1"] if SANITIZE else ["-O3", "-g0"]

extensions = [
    Extension(
        f"edge.{pyx.stem}",
        [str(pyx.relative_to(ROOT))],
        include_dirs=[np.get_include(), "csrc"],
        define_macros=macros,
        extra_compile_args=[*opt_flags, *omp_flags, *sanitize_flags],
        extra_link_args=[*omp_flags, *sanitize_flags],
    )
    for pyx in sorted((ROOT / "csrc").glob("*.pyx"))
]


def _load_device_bundle_module():
    """``edge/device_bundle.py`` loaded by path (the package itself is not built yet)."""
    spec = importlib.util.spec_from_file_location(
        "_semedge_device_bundle", ROOT / "edge" / "device_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithTargets(build_py):
    """Copy the board profiles from ``targets/`` into ``edge/targets/`` of the build; in
    the device build, also write the default bundle's device part and mark the flavour."""

    def finalize_options(self) -> None:
        super().finalize_options()
        # copy every file on every build: a build/ folder left by the other flavour holds
        # newer files (manifest, _flavour.py) that an up-to-date check would keep
        self.force = True

    def run(self) -> None:
        super().run()
        edge_dir = Path(self.build_lib) / "edge"
        dest = edge_dir / "targets"
        dest.mkdir(parents=True, exist_ok=True)
        for profile in sorted((ROOT / "targets").glob("*.toml")):
            shutil.copy2(profile, dest / profile.name)
        if DEVICE:
            self._device_bundle(edge_dir)

    def _device_bundle(self, edge_dir: Path) -> None:
        for stale in ("training", "synth"):  # left in build/ by an earlier full build
            shutil.rmtree(Path(self.build_lib) / stale, ignore_errors=True)
        source = ROOT / "edge" / "models" / "default"
        target = edge_dir / "models" / "default"
        shutil.rmtree(target, ignore_errors=True)
        if (source / "manifest.json").is_file():
            _load_device_bundle_module().write_device_bundle(source, target)
        text = (ROOT / "edge" / "_flavour.py").read_text()
        if 'FLAVOUR = "full"' not in text:
            sys.exit("setup.py: edge/_flavour.py no longer says FLAVOUR = \"full\"")
        (edge_dir / "_flavour.py").write_text(
            text.replace('FLAVOUR = "full"', 'FLAVOUR = "device"'))


BUNDLE_FILES = ["models/*/*", "models/*/checkpoints/*", "models/*/report/*"]
EDGE_DATA = ["py.typed", "*.pyi", "samples/*"]


setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
        include_path=["csrc"],
    ),
    packages=find_packages(include=["edge*"] if DEVICE else ["edge*", "synth*", "training*"]),
    # the device build writes its bundle in BuildPyWithTargets instead
    package_data={"edge": EDGE_DATA if DEVICE else [*EDGE_DATA, *BUNDLE_FILES],
                  "synth": ["recipes/*.toml"]},
    cmdclass={"build_py": BuildPyWithTargets},
)
