"""Data shipped inside the package (see PROVENANCE.md beside this file)."""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

GENOME_FILE = "GCF_001457455.1_NCTC11397_genomic.fna.gz"


def data_dir() -> Path:
    """Folder holding the packaged data files."""
    return _HERE


def genome_path() -> Path:
    """Path of the bundled genome: C. diphtheriae NCTC11397 (NZ_LN831026.1, 2,463,666 bp)."""
    return _HERE / GENOME_FILE
