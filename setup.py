"""Packaging: the compiler's folders (ir/, codegen/, runtime/) install under `kcompile`.

The repository keeps them at the top (imports point one way: kcompile -> ir, codegen,
runtime); installed, they are `kcompile.ir`, `kcompile.codegen` and `kcompile.runtime`,
so the distribution adds exactly one top-level name. Metadata is in pyproject.toml.
"""
from setuptools import find_packages, setup

INSIDE = {"kcompile.ir": "ir", "kcompile.codegen": "codegen", "kcompile.runtime": "runtime"}

packages = find_packages(include=["kcompile", "kcompile.*"])
for name, folder in INSIDE.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

# The C entry layer of exported libraries (runtime/export/runtime.c) is data to install.
setup(packages=packages, package_dir=INSIDE, package_data={"kcompile.runtime.export": ["*.c"]})
