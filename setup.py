"""The C hot paths of libshm; everything else about the package is in pyproject.toml.

The extension is optional: where it cannot be compiled (no C compiler) the install goes on and
the pure-Python paths run (same bytes, slower); ``hft doctor`` says which one is in use.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "libshm._fastpath",
            sources=["libshm/_ext/fastpath.c"],
            depends=["libshm/_ext/xxhash.h"],
            extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
