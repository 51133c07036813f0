"""The installed layout: import names, lazy imports, the README/CI contract."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["kernels", "cli", "csrc"])
def test_source_folders_are_not_top_level_packages(name):
    # Only genesae_fast.kernels / genesae_fast.cli may exist; a top-level `kernels` would
    # let code pass in the editable install and break in the wheel.
    assert importlib.util.find_spec(name) is None


def test_mapped_subpackages_import():
    import genesae_fast.cli
    import genesae_fast.kernels

    assert Path(genesae_fast.kernels.__file__).parent == REPO / "kernels"
    assert Path(genesae_fast.cli.__file__).parent == REPO / "cli"


def _run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_does_not_load_torch_or_triton():
    loaded = _run_python(
        "import sys, genesae_fast, genesae_fast.sequences, genesae_fast.kmers, genesae_fast.cli;"
        "print(sorted(m for m in ('torch', 'triton') if m in sys.modules))"
    )
    assert loaded == "[]"


def test_help_does_not_load_torch():
    loaded = _run_python(
        "import sys\n"
        "from genesae_fast.cli import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    assert loaded.splitlines()[-1] == "False"


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_starts_with_two_commands_and_ci_runs_the_second():
    install_and_run, install_and_test = _readme_commands()
    assert "genesae" in install_and_run and "\n" not in install_and_run
    assert install_and_test.rstrip().endswith("pytest") and "\n" not in install_and_test
    ci = (REPO / ".ci" / "run").read_text()
    assert install_and_test in ci.splitlines()
    # the linter runs after the install and before the tests
    install, lint, test = (install_and_test.index(s) for s in ('pip install', "ruff check .", "pytest"))
    assert install < lint < test


def test_native_extension_is_inside_the_package():
    import genesae_fast._native as native

    assert Path(native.__file__).parent == REPO / "genesae_fast"
