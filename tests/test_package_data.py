"""Shipped data files carry no absolute paths (of the machine that built them).

Every JSON, TSV and MEME file inside the package is read; JSON values and keys are
checked one by one, and the text of every file is searched for path-shaped runs
(``/dir/...``, ``C:\\...``, ``~/...``). URLs (``https://host/...``) are not paths.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS = [REPO / "genesae_fast", REPO / "kernels", REPO / "cli"]
SUFFIXES = {".json", ".tsv", ".meme"}
# a slash that starts a path: not after a word character, a dot, a colon or another slash
ABSOLUTE = re.compile(r"(?<![\w.:/])/(?:[\w.+-]+/)+[\w.+-]*|\b[A-Za-z]:\\[\w.]|(?<![\w/])~/[\w.]")


def shipped_files() -> list[Path]:
    """Data files installed with the package (what the wheel carries besides code)."""
    return sorted(p for root in PACKAGE_ROOTS for p in root.rglob("*")
                  if p.suffix in SUFFIXES and p.is_file() and ".venv" not in p.parts)


def _json_strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_strings(v)
    elif isinstance(value, str):
        yield value


def absolute_paths(path: Path) -> list[str]:
    """Path-shaped strings found in ``path``."""
    text = path.read_text(errors="replace")
    found = ABSOLUTE.findall(text)
    if path.suffix == ".json":
        found += [s for s in _json_strings(json.loads(text)) if s.startswith(("/", "~/")) or ABSOLUTE.search(s)]
    return sorted(set(found))


def test_the_shipped_files_are_found():
    names = {p.name for p in shipped_files()}
    assert {"lm_config.json", "metrics.json", "jaspar2024_core_vertebrates.meme"} <= names


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_absolute_paths(path):
    assert absolute_paths(path) == []


@pytest.mark.parametrize("text, bad", [
    ('{"genome": "/work/main/genesae_fast/data/g.fna.gz"}', True),
    ('{"training": {"genome": "g.fna.gz", "note": "made in /home/me/run"}}', True),
    ('{"files": ["C:\\\\data\\\\g.fa"]}', True),
    ('{"p": "~/genomes/g.fa"}', True),
    ('{"genome": "g.fna.gz", "url": "https://jaspar.elixir.no/matrix/MA0139.2/", "ratio": "a / b"}', False),
    ('{"tokenizer": "A=0 C=1; bp_end = bp_start + 1", "frac": "1/2"}', False),
])
def test_checker(tmp_path, text, bad):
    path = tmp_path / "x.json"
    path.write_text(text)
    assert bool(absolute_paths(path)) == bad
