"""The type stubs of the native extension: complete, parseable, shipped."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import genesae_fast
from genesae_fast import _native

STUB = Path(genesae_fast.__file__).with_name("_native.pyi")


def stub_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(STUB.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_binding_has_a_stub():
    bound = {name for name, obj in vars(_native).items() if callable(obj) and not inspect.isclass(obj)}
    missing = bound - set(stub_functions())
    assert not missing, f"add these bindings to genesae_fast/_native.pyi: {sorted(missing)}"


def test_stub_arguments_match_the_bindings():
    # pybind11 puts the signature on the first docstring line: name(arg: type, ...) -> result
    for name, node in stub_functions().items():
        if name == "__getattr__":
            continue
        doc_line = getattr(_native, name).__doc__.splitlines()[0]
        bound_args = re.findall(r"[(,] ?(\w+): ", doc_line)
        stub_args = [a.arg for a in node.args.args]
        assert bound_args[: len(stub_args)] == stub_args, name


def test_stub_is_package_data():
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["genesae_fast"]
    assert "*.pyi" in patterns
    assert "py.typed" in patterns
