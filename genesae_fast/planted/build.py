"""Build a planted genome from options, write it as files, and read the files back.

Files in the output folder:

- ``genome.fa``: one record, ``planted``;
- ``sites.bed``: one line per site (BED6: sequence, start, end, motif ID, 0, strand);
- ``motifs.meme``: the planted motifs then the decoys (``genesae run --motifs`` takes it);
- ``planted.json``: the IDs of the planted motifs and of the decoys, and every option used.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.planted.genome import DEFAULT_SMOOTHING, PlantedGenome, PlantedSites, base_sequence, plant
from genesae_fast.planted.motif_sets import DEFAULT_PLANTED, choose_decoys, choose_planted

FILES = {"fasta": "genome.fa", "bed": "sites.bed", "meme": "motifs.meme", "manifest": "planted.json"}


@dataclass
class PlantOptions:
    """Everything that decides a planted genome (the same options give the same bytes)."""

    length: int = 1_000_000
    n_sites: int = 400
    planted: tuple = DEFAULT_PLANTED
    n_decoys: int = 32
    seed: int = 0
    genome: str | None = None
    offset: int = 0
    mutate: float = 0.0
    smoothing: float = DEFAULT_SMOOTHING
    gap: int = 10
    motifs: str = "jaspar2024:CORE:vertebrates"

    def check(self) -> None:
        """Raise :class:`InputError` for an option out of range."""
        if self.n_sites < 1:
            raise InputError(f"--sites {self.n_sites}: must be at least 1")
        if self.n_decoys < 0:
            raise InputError(f"--decoys {self.n_decoys}: must be at least 0")
        if not 0.0 <= self.smoothing <= 1.0:
            raise InputError(f"--smoothing {self.smoothing}: must be in [0, 1]")
        if self.gap < 0:
            raise InputError(f"--gap {self.gap}: must be at least 0")


def make_planted_genome(opts: PlantOptions | None = None, **kwargs) -> PlantedGenome:
    """A planted genome from ``opts`` (or :class:`PlantOptions` fields as keywords).

    One generator seeded with ``opts.seed`` draws, in order, the mutations of the base, the
    sites, their strands and places, then the decoys' order.
    """
    from genesae_fast.motifs import load_motifs

    opts = opts if opts is not None else PlantOptions(**kwargs)
    opts.check()
    motifs = load_motifs(opts.motifs)
    planted = choose_planted(motifs, tuple(opts.planted))
    ids = [m.id for m in planted]
    if len(set(ids)) != len(ids):
        raise InputError(f"--planted {','.join(opts.planted)}: a motif is named twice")
    rng = np.random.default_rng(opts.seed)
    base = base_sequence(opts.length, opts.genome, offset=opts.offset, mutate=opts.mutate, rng=rng)
    codes, sites = plant(base, planted, opts.n_sites, rng, smoothing=opts.smoothing, gap=opts.gap)
    decoys = choose_decoys(motifs, planted, opts.n_decoys, seed=int(rng.integers(2**31))) if opts.n_decoys else []
    return PlantedGenome(codes, sites, planted, decoys, opts.seed)


def write_planted(pg: PlantedGenome, out, opts: PlantOptions | None = None) -> dict:
    """Write the genome, sites, motifs and manifest into folder ``out``; returns kind -> path.

    The manifest is written last, so a folder with ``planted.json`` is complete.
    """
    from genesae_fast.motifs import write_meme
    from genesae_fast.outputs import open_output
    from genesae_fast.sequences import Record, write_fasta

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / v for k, v in FILES.items()}
    write_fasta([Record(pg.name, f"seed={pg.seed}", pg.codes, np.zeros(pg.codes.shape[0], bool))], paths["fasta"])
    ids = [m.id for m in pg.planted]
    s = pg.sites
    with open_output(paths["bed"], "w") as fh:
        for a, b, m, st in zip(s.start, s.end, s.motif, s.strand):
            fh.write(f"{pg.name}\t{a}\t{b}\t{ids[m]}\t0\t{'+' if st > 0 else '-'}\n")
    write_meme(list(pg.planted) + list(pg.decoys), paths["meme"])
    manifest = {"sequence": pg.name, "length": int(pg.codes.shape[0]), "seed": int(pg.seed),
                "planted": [{"id": m.id, "name": m.alt_id, "width": m.width} for m in pg.planted],
                "decoys": [{"id": m.id, "name": m.alt_id, "width": m.width} for m in pg.decoys],
                "sites_per_motif": int(np.bincount(s.motif, minlength=len(ids)).max()) if len(s) else 0,
                "options": _jsonable(asdict(opts)) if opts is not None else {}}
    with open_output(paths["manifest"], "w") as fh:
        fh.write(json.dumps(manifest, indent=2) + "\n")
    return {k: str(v) for k, v in paths.items()}


def _jsonable(d: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def read_sites_bed(path, motif_ids: list) -> PlantedSites:
    """Sites of a ``sites.bed`` (BED6 with strand); ``motif_ids`` gives the index of each name.

    Raises
    ------
    InputError
        A line that is not BED6 with a known motif and a +/- strand.
    """
    cols: dict = {"start": [], "end": [], "motif": [], "strand": []}
    index = {m: i for i, m in enumerate(motif_ids)}
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            f = line.rstrip("\n").split("\t")
            if len(f) < 6 or f[3] not in index or f[5] not in "+-" or len(f[5]) != 1:
                raise InputError(f"{path}:{n}: expected BED6 with a planted motif ID and strand +/-")
            cols["start"].append(int(f[1]))
            cols["end"].append(int(f[2]))
            cols["motif"].append(index[f[3]])
            cols["strand"].append(1 if f[5] == "+" else -1)
    return PlantedSites(np.array(cols["start"], np.int64), np.array(cols["end"], np.int64),
                        np.array(cols["motif"], np.int64), np.array(cols["strand"], np.int8))


def read_manifest(folder) -> dict:
    """``planted.json`` of a folder written by :func:`write_planted`."""
    p = Path(folder) / FILES["manifest"]
    if not p.is_file():
        raise InputError(f"{folder}: no {FILES['manifest']} (not a complete planted-genome folder)")
    return json.loads(p.read_text())
