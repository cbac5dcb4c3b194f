"""The compiled parts; everything else about the package is in pyproject.toml.

- libshm's C hot paths (``libshm/_ext``) and the import's one-pass CSV reader
  (``services/md_recorder/_ext``), built by every install. Optional: where they cannot be
  compiled (no C compiler) the install goes on and the pure-Python paths run (same bytes,
  slower); ``hft doctor`` says which one is in use.
- The engine's core compiled with mypyc (``services/engine/native.py`` lists the modules), built
  only when ``HFT_MYPYC=1``: ``make native`` runs ``HFT_MYPYC=1 python setup.py build_ext
  --inplace`` in the project's venv, where mypy sees every dependency's types. Without it the
  engine runs from its sources.
"""

import os
import runpy

from setuptools import Extension, setup

ext_modules = [
    Extension(
        "libshm._fastpath",
        sources=["libshm/_ext/fastpath.c"],
        depends=["libshm/_ext/xxhash.h"],
        extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        optional=True,
    ),
    Extension(
        "services.md_recorder._csvscan",
        sources=["services/md_recorder/_ext/csvscan.c"],
        extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        optional=True,
    ),
]
native = None
if os.environ.get("HFT_MYPYC") == "1":
    from mypyc.build import mypycify

    native = runpy.run_path("services/engine/native.py", run_name="native_build")
    ext_modules += mypycify(
        [str(native["source_of"](m).relative_to(native["ROOT"])) for m in native["MODULES"]],
        opt_level="3",
        group_name=native["GROUP"],  # its shared library: services/engine/compiled__mypyc.*.so
    )

setup(ext_modules=ext_modules)

if native is not None:  # built: the sources it was built from
    native["STAMP"].write_text(native["digest"]() + "\n", encoding="ascii")
