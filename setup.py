"""Build of the C++ extension ``genesae_fast._native`` and the package list.

Metadata, dependencies and the folder -> import-name mapping are in pyproject.toml.
"""
import glob

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension
from setuptools import find_packages, setup

# Compile the translation units on every core (CI has two).
ParallelCompile("GENESAE_BUILD_JOBS", default=0).install()

# The three source roots and their import names (pyproject's package-dir maps them);
# subpackages are found here so a new one cannot be left out of the wheel.
ROOTS = {"genesae_fast": "genesae_fast", "genesae_fast.kernels": "kernels", "genesae_fast.cli": "cli"}
packages = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

native = Pybind11Extension(
    "genesae_fast._native",
    sorted(glob.glob("csrc/*.cpp")),
    include_dirs=["csrc"],
    cxx_std=17,
    # -O3 without -march=native: the wheel must run on any x86-64 / aarch64.
    extra_compile_args=["-O3", "-fvisibility=hidden"],
)

setup(packages=packages, ext_modules=[native])
