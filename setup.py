"""Build: the cffi core (native/build.py) and the CPython-API extensions.

cffi has no pyproject form, so both are declared here.  The CPython-API
modules build Python objects (dicts, bytes) in C, which cffi cannot do
cheaply; they get the same warnings-as-errors flags as the cffi core.
"""

import os

from setuptools import Extension, setup


def compile_args() -> list[str]:
    args = ["-O2", "-Wall", "-Wextra", "-std=c11"]
    if os.environ.get("SAFEPOINT_DEV_BUILD", "1") != "0":
        args.append("-Werror")
    return args


def native_module(name: str, *sources: str) -> Extension:
    return Extension(
        f"safepoint.{name}",
        sources=[f"native/{s}" for s in sources],
        include_dirs=["native"],
        extra_compile_args=compile_args(),
    )


setup(
    cffi_modules=["native/build.py:ffibuilder"],
    ext_modules=[
        native_module("_sp_batch", "sp_batch.c"),
    ],
)
