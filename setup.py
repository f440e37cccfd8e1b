"""Build the Cython kernels in ``csrc/`` into extension modules of the ``edge`` package.

OpenMP is used when the compiler supports it (``SEMEDGE_OPENMP=0`` turns it off); the
kernels fall back to one thread without it. ``targets/*.toml`` ship inside the wheel as
``edge/targets/``. ``SEMEDGE_SANITIZE=1`` builds the kernels with AddressSanitizer and
UndefinedBehaviorSanitizer (GCC/Clang; for ``scripts/sanitize-check``, never for a wheel).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


def _compiler_supports_openmp() -> bool:
    if os.environ.get("SEMEDGE_OPENMP", "1") == "0" or sys.platform == "win32":
        return False
    from distutils.ccompiler import new_compiler  # noqa: PLC0415  (setuptools vendors it)
    from distutils.sysconfig import customize_compiler  # noqa: PLC0415

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "omp.c"
        src.write_text("#include <omp.h>\nint main(void){return omp_get_max_threads()>0?0:1;}\n")
        try:
            objs = compiler.compile([str(src)], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objs, str(Path(tmp) / "omp"), extra_postargs=["-fopenmp"])
        except Exception:  # any compile or link failure means: no OpenMP here
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


class BuildPyWithTargets(build_py):
    """Copy the board profiles from ``targets/`` into ``edge/targets/`` of the build."""

    def run(self) -> None:
        super().run()
        dest = Path(self.build_lib) / "edge" / "targets"
        dest.mkdir(parents=True, exist_ok=True)
        for profile in sorted((ROOT / "targets").glob("*.toml")):
            shutil.copy2(profile, dest / profile.name)


setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
        include_path=["csrc"],
    ),
    cmdclass={"build_py": BuildPyWithTargets},
)
