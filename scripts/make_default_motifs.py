"""Regenerate genesae_fast/data/jaspar2024_core_vertebrates.meme from pyjaspar's JASPAR 2024 database.

The file holds JASPAR 2024 CORE, latest version of every vertebrate matrix, sorted by matrix
ID, as MEME minimal text: probabilities = counts / column total (6 decimals, as MEME's own
converters write them) and ``nsites`` = the count total of the first column, which FIMO uses
to weigh its pseudocount. JASPAR data are CC BY 4.0 (see genesae_fast/data/JASPAR_LICENSE.md).

Usage: python scripts/make_default_motifs.py [--out PATH]   (needs `pip install pyjaspar`)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from genesae_fast.motifs import motif_from_counts, write_meme

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "genesae_fast" / "data" / "jaspar2024_core_vertebrates.meme"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    from pyjaspar import jaspardb

    db = jaspardb(release="JASPAR2024")
    # all_versions=False: the latest version of each matrix
    raw = db.fetch_motifs(collection="CORE", tax_group=["vertebrates"], all_versions=False)
    motifs = [motif_from_counts(str(m.matrix_id), str(m.name), [m.counts[b] for b in "ACGT"]) for m in raw]
    motifs.sort(key=lambda m: m.id)
    write_meme(motifs, args.out)
    print(f"{len(motifs)} motifs, {sum(m.width for m in motifs)} columns -> {args.out}")


if __name__ == "__main__":
    main()
