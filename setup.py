"""Build of the C++ extension ``genesae_fast._native``; all metadata is in pyproject.toml."""
import glob

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension
from setuptools import setup

# Compile the translation units on every core (CI has two).
ParallelCompile("GENESAE_BUILD_JOBS", default=0).install()

native = Pybind11Extension(
    "genesae_fast._native",
    sorted(glob.glob("csrc/*.cpp")),
    include_dirs=["csrc"],
    cxx_std=17,
    # -O3 without -march=native: the wheel must run on any x86-64 / aarch64.
    extra_compile_args=["-O3", "-fvisibility=hidden"],
)

setup(ext_modules=[native])
