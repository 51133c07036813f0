"""How much the per-concept results depend on the SAE's random seed (``genesae run --seeds N``).

Extra SAEs are trained on the same store with seeds ``seed + 1 .. seed + N - 1`` and annotated
with the same held-out protocol (best feature per concept chosen on the select split, F1 on
the evaluate split; the significance controls and the neuron baseline are left out, they do
not change these F1s). ``seeds.tsv`` gives each concept's held-out best F1 per seed and the
range (max - min); the summary gives the median and largest range over the concepts some
seed matches at F1 >= ``MIN_F1`` (the others are 0 for every seed and would hide the spread).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SEEDS_FILE = "seeds.tsv"
MIN_F1 = 0.1


def seed_dirs(out, seeds: int) -> list[tuple[Path, Path]]:
    """``(sae folder, annotation folder)`` of each extra seed ``1 .. seeds - 1``."""
    out = Path(out)
    return [(out / f"sae_seed{i}", out / f"annotate_seed{i}") for i in range(1, int(seeds))]


def run_seeds(out, store, genome, *, seeds: int, base_seed: int, train_kwargs: dict, motifs, gff, threads: int,
              block: int | None = None, progress: bool = False) -> Path:
    """Train and annotate the extra seeds (each step skipped when complete); write ``seeds.tsv``.

    ``out/annotate`` (seed ``base_seed``) must be complete; ``block`` is its split block (None:
    the default, as it used). Returns the path of ``seeds.tsv``.
    """
    from genesae_fast.annotate import annotate
    from genesae_fast.annotate.folder import read_tsv
    from genesae_fast.layer_choice import light_config
    from genesae_fast.train import train_sae

    tables = [read_tsv(Path(out) / "annotate" / "concepts.tsv")]
    for i, (sae, ann) in enumerate(seed_dirs(out, seeds), start=1):
        if not (ann / "summary.json").is_file():
            if not (sae / "sae.safetensors").is_file() or (sae / "trainer_state.pt").exists():
                train_sae(store, sae, seed=base_seed + i, progress=progress, lm_loss=False, **train_kwargs)
            annotate(store, sae, ann, genome=genome, motifs=motifs, gff=gff, cfg=light_config(base_seed, threads, block),
                     progress=progress, overwrite=True)
        tables.append(read_tsv(ann / "concepts.tsv"))
    return write_seeds_tsv(tables, Path(out) / SEEDS_FILE, base_seed=base_seed)


def f1_matrix(tables: list[dict]) -> tuple[list, list, np.ndarray]:
    """(concepts, kinds, F1 [concepts, seeds]) of concepts with hits, in the first table's order."""
    first = tables[0]
    keep = [i for i, n in enumerate(first["n_hits"]) if int(n) > 0]
    names = [first["concept"][i] for i in keep]
    kinds = [first["kind"][i] for i in keep]
    cols = []
    for t in tables:
        by_name = {c: f for c, f, k in zip(t["concept"], t["f1"], t["kind"])}
        cols.append([float(by_name.get(c, "nan")) if by_name.get(c, "NA") != "NA" else np.nan for c in names])
    return names, kinds, np.nan_to_num(np.array(cols, dtype=np.float64).T.reshape(len(names), len(tables)))


def write_seeds_tsv(tables: list[dict], path: Path, *, base_seed: int) -> Path:
    """``seeds.tsv``: concept, kind, held-out best F1 per seed, range (atomic)."""
    from genesae_fast.outputs import open_output

    names, kinds, f1 = f1_matrix(tables)
    seeds = [base_seed + i for i in range(len(tables))]
    with open_output(path, "w") as fh:
        fh.write("\t".join(["concept", "kind", *(f"f1_seed{s}" for s in seeds), "range"]) + "\n")
        for c, k, row in zip(names, kinds, f1):
            fh.write("\t".join([c, k, *(f"{v:.6g}" for v in row), f"{row.max() - row.min():.6g}"]) + "\n")
    return path


def spread_summary(out, seeds: int) -> dict:
    """The ``seed_spread`` entry of ``summary.json``: measured from ``seeds.tsv``, or why not."""
    path = Path(out) / SEEDS_FILE
    if int(seeds) < 2 or not path.is_file():
        return {"seeds": int(seeds), "measured": False,
                "note": "one SAE seed: seed-to-seed spread not measured (genesae run --seeds 2 or 3)"}
    from genesae_fast.annotate.folder import read_tsv

    t = read_tsv(path)
    f1 = np.array([[float(t[c][i]) for c in t if c.startswith("f1_seed")] for i in range(len(t["concept"]))])
    f1 = f1.reshape(len(t["concept"]), -1)
    matched = f1.max(axis=1) >= MIN_F1 if f1.size else np.zeros(0, bool)
    rng = (f1.max(axis=1) - f1.min(axis=1))[matched] if f1.size else np.zeros(0)
    return {"seeds": int(f1.shape[1]), "measured": True, "concepts": int(matched.sum()), "min_f1": MIN_F1,
            "median_range": float(np.median(rng)) if rng.size else 0.0,
            "max_range": float(rng.max()) if rng.size else 0.0,
            "concepts_f1_ge_0.3_per_seed": [int(x) for x in (f1 >= 0.3).sum(axis=0)]}


def describe_spread(spread: dict) -> str:
    """One line for the terminal summary and the report."""
    if not spread.get("measured"):
        return spread.get("note", "seed spread not measured")
    return (f"{spread['seeds']} SAE seeds: held-out best F1 per concept varies by a median "
            f"{spread['median_range']:.3f} (max {spread['max_range']:.3f}) over the {spread['concepts']} concepts "
            f"with F1 >= {spread['min_f1']} in some seed; concepts at F1 >= 0.3 per seed: "
            f"{', '.join(map(str, spread['concepts_f1_ge_0.3_per_seed']))}")


__all__ = ["run_seeds", "spread_summary", "describe_spread", "SEEDS_FILE", "seed_dirs"]
