"""``genesae causal RUN_DIR``: test the best (feature, concept) pairs of a run, write ``causal.tsv``.

Reads ``RUN_DIR/store.zarr`` (model, layer, genome), ``RUN_DIR/sae`` and the annotation
folder ``RUN_DIR/annotate`` (``concepts.tsv``, ``features.tsv``, ``motif_hits.bed``,
``summary.json``); writes ``annotate/causal.tsv`` (atomically, last, so it is complete or
absent) after adding ``causal_*`` entries to ``summary.json``.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from genesae_fast.causal.measure import Splice, score_sites
from genesae_fast.causal.sites import (Pair, held_out_sites, motif_hits, random_feature, random_sites,
                                       read_motif_bed, read_pairs)
from genesae_fast.causal.stats import effect
from genesae_fast.errors import InputError

OUTPUT = "causal.tsv"
COLUMNS = ("concept", "kind", "strand", "feature", "f1", "n_sites", "n_bases", "n_random", "site_fire_frac",
           "random_fire_frac", "bits_clean", "bits_spliced", "delta_site", "delta_site_lo", "delta_site_hi",
           "delta_random", "random_feature", "delta_random_feature", "ratio_random", "ratio_random_lo",
           "ratio_random_hi", "ratio_feature", "ratio_feature_lo", "ratio_feature_hi")
DEFAULT_PAIRS = 20
DEFAULT_SITES = 200


def load_store_model(store, device=None):
    """The model named by a store's attrs, checked against the weights it was made with.

    Raises InputError when the store names no model, the weights changed, or the model
    cannot give next-base log-probs.
    """
    from genesae_fast.models import load_model

    info = store.attrs.get("model") or {}
    name, path = info.get("name", ""), info.get("path", "")
    if not name and not path:
        raise InputError(f"{store.path}: the store does not name its model (made by 'genesae import'?)")
    spec = "builtin" if name == "builtin" else path
    model = load_model(spec, device=device)
    if not hasattr(model, "next_base_logprobs"):
        raise InputError(f"model {model.name}: cannot run with a patched layer (no next-base log-probs)")
    want = info.get("sha256", "")
    if want and model.identity.get("sha256") != want:
        raise InputError(f"model {spec}: its weights differ from those {store.path} was made with")
    return model


def _read_folder(run_dir: Path) -> tuple[dict, dict, dict]:
    """concepts.tsv, features.tsv and summary.json of ``run_dir/annotate``."""
    from genesae_fast.annotate.folder import MARKER, read_tsv

    ann = run_dir / "annotate"
    for name in (MARKER, "concepts.tsv", "features.tsv"):
        if not (ann / name).is_file():
            raise InputError(f"{run_dir}: no complete annotation ({ann / name} missing); run `genesae run` first")
    try:
        summary = json.loads((ann / MARKER).read_text())
    except ValueError as exc:
        raise InputError(f"{ann / MARKER}: unreadable ({exc})") from None
    return read_tsv(ann / "concepts.tsv"), read_tsv(ann / "features.tsv"), summary


def _inputs(run_dir: Path, summary: dict, need_genes: bool):
    """Store, SAE, genome (records cut to the part the store covers, as the annotation cut
    them, so global coordinates and the split agree) and the gene calls (empty when
    ``need_genes`` is False: calling genes costs seconds)."""
    from genesae_fast.annotate.core import Genome
    from genesae_fast.annotate.folder import Inputs, _covered, load_inputs, prepare
    from genesae_fast.sequences import Record

    for sub in ("store.zarr", "sae"):
        if not (run_dir / sub).exists():
            raise InputError(f"{run_dir}: no {sub} (not a `genesae run` folder)")
    genome = summary.get("genome") if summary.get("genome") and os.path.isfile(summary["genome"]) else None
    source = summary.get("gene_source", "pyrodigal")
    if need_genes:
        return prepare(run_dir / "store.zarr", run_dir / "sae", genome, None, None if source == "pyrodigal" else source,
                       strands="forward")
    # the forward pass only (the LM is patched reading +): the plain SAE, not the pooled one
    store, sae, records, genome_path = load_inputs(run_dir / "store.zarr", run_dir / "sae", genome, strands="forward")
    by_name = {r.name: r for r in records}
    full = [by_name[n] for n in store.sequence_names]
    recs = [Record(r.name, r.description, r.codes[:e], r.softmask[:e]) for r, e in zip(full, _covered(store, len(full)))]
    return Inputs(store, sae, genome_path, recs, Genome.from_records(recs), None, None, [])


def concept_site_arrays(pair: Pair, inp, bed: dict) -> tuple[np.ndarray, np.ndarray]:
    """Global (start, end) of every hit of a pair's concept."""
    from genesae_fast.annotate.sources import gene_sources

    if pair.kind == "motif":
        return motif_hits(bed, pair)
    g = inp.genome
    source = gene_sources(inp.calls, g.offsets, g.lengths).get(pair.concept)
    if source is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return source.starting(0, int(g.codes.shape[0]))


def measure_pair(model, sae, codes, layer: int, pair: Pair, sites, rand, g: int, *, seed: int) -> dict:
    """One row of causal.tsv: the five runs (clean, spliced, feature ablated at sites,
    random feature ablated at sites; spliced and feature ablated at random intervals)."""
    clean = score_sites(model, codes, sites)
    base = score_sites(model, codes, sites, layer=layer, replace=Splice(sae))
    abl = score_sites(model, codes, sites, layer=layer, replace=Splice(sae, (pair.feature,)))
    ctrl = score_sites(model, codes, sites, layer=layer, replace=Splice(sae, (g,))) if g >= 0 else None
    r0 = score_sites(model, codes, rand, layer=layer, replace=Splice(sae))
    r1 = score_sites(model, codes, rand, layer=layer, replace=Splice(sae, (pair.feature,)))
    d_g = (ctrl.bits - base.bits) if ctrl is not None else np.full(len(sites), np.nan)
    eff = effect(base.n_bases, abl.bits - base.bits, d_g, r0.n_bases, r1.bits - r0.bits, seed=seed)
    nb = int(base.n_bases.sum())
    return {
        "concept": pair.concept, "kind": pair.kind, "strand": pair.strand or ("both" if pair.kind == "motif" else ""), "feature": pair.feature,
        "f1": pair.f1, "n_sites": len(sites), "n_bases": nb, "n_random": len(rand),
        "site_fire_frac": float(abl.fired.mean()) if len(sites) else float("nan"),
        "random_fire_frac": float(r1.fired.mean()) if len(rand) else float("nan"),
        "bits_clean": clean.bits.sum() / nb if nb else float("nan"),
        "bits_spliced": base.bits.sum() / nb if nb else float("nan"),
        "delta_site": eff.delta_site, "delta_site_lo": eff.delta_site_ci[0], "delta_site_hi": eff.delta_site_ci[1],
        "delta_random": eff.delta_random, "random_feature": g, "delta_random_feature": eff.delta_random_feature,
        "ratio_random": eff.ratio_random, "ratio_random_lo": eff.ratio_random_ci[0],
        "ratio_random_hi": eff.ratio_random_ci[1], "ratio_feature": eff.ratio_feature,
        "ratio_feature_lo": eff.ratio_feature_ci[0], "ratio_feature_hi": eff.ratio_feature_ci[1],
    }


def run_causal(run_dir, *, n_pairs: int = DEFAULT_PAIRS, max_sites: int = DEFAULT_SITES, seed: int = 0,
               device=None, progress: bool = True) -> dict:
    """Test the ``n_pairs`` best (feature, concept) pairs of a run; write ``annotate/causal.tsv``.

    Parameters
    ----------
    run_dir : folder of ``genesae run`` (store.zarr, sae/, annotate/)
    n_pairs : pairs tested (the best by held-out F1 in concepts.tsv)
    max_sites : held-out sites per pair (a random subset when there are more)
    seed : seed of the site subsets, random intervals, random features and bootstrap
    device : torch device of the model

    Returns
    -------
    dict
        The ``causal_*`` entries added to ``summary.json``.
    """
    run_dir = Path(run_dir)
    if int(n_pairs) < 1:
        raise InputError(f"--pairs {n_pairs}: must be at least 1")
    if int(max_sites) < 2:
        raise InputError(f"--sites {max_sites}: must be at least 2 (the bootstrap resamples sites)")
    concepts, features, summary = _read_folder(run_dir)
    pairs = read_pairs(concepts, n_pairs)
    inp = _inputs(run_dir, summary, any(p.kind != "motif" for p in pairs))
    model = load_store_model(inp.store, device)
    with _one_torch_thread():
        rows = _measure_all(model, inp, pairs, features, run_dir, summary, max_sites=int(max_sites), seed=int(seed),
                            progress=progress)
    extra = summary_entries(rows, layer=int(inp.store.attrs["layer"]), n_pairs=int(n_pairs), max_sites=int(max_sites),
                            seed=int(seed))
    write_outputs(run_dir / "annotate", rows, summary, extra)
    return extra


@contextlib.contextmanager
def _one_torch_thread():
    """One torch thread while the stage runs: the scores never depend on a thread count, and on
    a busy CPU one thread ran the small forward batches 7-11x faster than two (2-core VM)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _measure_all(model, inp, pairs, features, run_dir: Path, summary: dict, *, max_sites: int, seed: int,
                 progress: bool) -> list:
    """Rows of causal.tsv, one per pair with at least two held-out sites."""
    from tqdm import tqdm

    layer, g = int(inp.store.attrs["layer"]), inp.genome
    block = int(summary.get("split_block_bp") or 0)
    if block < 1:
        raise InputError(f"{run_dir / 'annotate'}: summary.json has no split_block_bp (annotation too old?)")
    bed = read_motif_bed(run_dir / "annotate" / "motif_hits.bed", g.names, g.offsets)
    rows = []
    for i, pair in enumerate(tqdm(pairs, desc="causal", unit="pair", disable=not progress)):
        rng = np.random.default_rng([seed, i])
        sites = held_out_sites(*concept_site_arrays(pair, inp, bed), g, block, max_sites, rng)
        if len(sites) < 2:
            continue
        rand = random_sites(sites, g, block, rng)
        g_feat = random_feature(features, pair.feature, rng)
        rows.append(measure_pair(model, inp.sae, g.codes, layer, pair, sites, rand, g_feat, seed=seed + i))
    return rows


def summary_entries(rows: list, *, layer: int, n_pairs: int, max_sites: int, seed: int) -> dict:
    """The ``causal_*`` keys of summary.json."""
    specific = [r for r in rows if r["ratio_random_lo"] > 1 and r["ratio_feature_lo"] > 1]
    return {"causal_pairs_tested": len(rows), "causal_pairs_specific": len(specific),
            "causal_layer": layer, "causal_settings": {"pairs": n_pairs, "sites": max_sites, "seed": seed,
                                                       "passes": "forward strand pass only"}}


def write_outputs(ann: Path, rows: list, summary: dict, extra: dict) -> None:
    """summary.json with ``extra`` (atomic), then causal.tsv (atomic, the completion marker)."""
    from genesae_fast.annotate.folder import MARKER, _fmt
    from genesae_fast.outputs import open_output

    summary = {k: v for k, v in summary.items() if not k.startswith("causal_")}
    summary.update(extra)
    with open_output(ann / MARKER, "w") as fh:
        fh.write(json.dumps(summary, indent=2))
    with open_output(ann / OUTPUT, "w") as fh:
        fh.write("\t".join(COLUMNS) + "\n")
        for r in rows:
            fh.write("\t".join(_fmt(r[c]) for c in COLUMNS) + "\n")
