"""``genesae annotate``: open a store and an SAE, annotate, write the annotation folder.

Folder contents: ``features.tsv``, ``feature_motif.tsv``, ``feature_concept.tsv``,
``concepts.tsv`` (best SAE feature vs best neuron per concept), ``examples.parquet``,
``logos.json``, ``summary.json``, ``tracks/feature_<i>.bedGraph``, ``motif_hits.bed``.
Everything is written into a temporary folder that is renamed into place at the end, so
an interrupted run never leaves a folder that looks complete.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from genesae_fast.annotate.core import Config, Genome, Result, annotate_encoded
from genesae_fast.errors import InputError

MARKER = "summary.json"


def _genome_for(store, genome):
    """The FASTA to use: the given one, else the one recorded in the store."""
    if genome is None:
        genome = ((store.attrs or {}).get("genome") or {}).get("path")
        if not genome or not Path(genome).is_file():
            raise InputError(f"{store.path}: the store does not name a readable genome; pass --genome")
    return str(genome)


def load_inputs(store_path, sae_path, genome=None, device="cpu"):
    """Open the store and the SAE and read the genome; check they fit together."""
    from genesae_fast.sae import TopKSAE
    from genesae_fast.sequences import read_fasta
    from genesae_fast.store import ActivationStore

    store = ActivationStore.open(store_path)
    if not store.has_coordinates:
        raise InputError(f"{store_path}: the store has no genome coordinates (imported?); annotate needs them")
    if not (Path(sae_path) / "sae.safetensors").is_file():
        raise InputError(f"{sae_path}: not an SAE folder (no sae.safetensors)")
    sae = TopKSAE.load(sae_path, device=device)
    sae.eval()
    if int(sae.config["d_in"]) != store.d:
        raise InputError(f"{sae_path}: SAE input size {sae.config['d_in']} does not match the store's d={store.d}")
    genome_path = _genome_for(store, genome)
    records = read_fasta(genome_path)
    by_name = {r.name: r for r in records}
    missing = [n for n in store.sequence_names if n not in by_name]
    if missing:
        raise InputError(f"{genome_path}: sequence {missing[0]!r} of the store is not in this genome")
    return store, sae, records, genome_path


def annotate(store_path, sae_path, out, genome=None, motifs: str | None = "jaspar2024:CORE:vertebrates", gff=None,
             cfg: Config | None = None, progress: bool = True, overwrite: bool = False) -> dict:
    """Annotate every SAE feature; writes the folder ``out`` and returns its summary dict.

    Parameters
    ----------
    store_path : activation store with coordinates
    sae_path : SAE folder
    out : annotation folder to write
    genome : FASTA (default: the genome recorded in the store)
    motifs : motif SPEC or file for ``load_motifs``; None for no motif concepts
    gff : GFF3 with CDS features; None to predict genes with pyrodigal
    cfg : Config
    """
    from genesae_fast.annotate.encode import encode_store
    from genesae_fast.annotate.genes import predict_genes, read_gff3

    cfg = cfg or Config()
    out = Path(out)
    if (out / MARKER).exists() and not overwrite:
        raise InputError(f"{out}: an annotation is already there (use --overwrite)")
    store, sae, records, genome_path = load_inputs(store_path, sae_path, genome)
    # records in the store's order (seq indices of the store's coordinates)
    order = store.sequence_names or [r.name for r in records]
    by_name = {r.name: r for r in records}
    recs = [by_name[n] for n in order]
    seq, bp_start, bp_end, _ = store.coordinates()
    # a store of a slice (extract --max-tokens) covers only a prefix: concepts outside it
    # would count as hits never found, so every record is cut to its covered length
    from genesae_fast.sequences import Record

    covered = np.zeros(len(recs), np.int64)
    np.maximum.at(covered, np.asarray(seq, np.int64), np.asarray(bp_end, np.int64))
    full = recs
    recs = [Record(r.name, r.description, r.codes[:e], r.softmask[:e]) for r, e in zip(recs, covered)]
    g = Genome.from_records(recs)

    motif_list, real, ctrl = None, None, None
    if motifs:
        from genesae_fast.motifs import load_motifs, shuffle_columns
        from genesae_fast.scan import scan_motifs

        motif_list = load_motifs(motifs)
        rng = np.random.default_rng(cfg.seed)
        controls = [shuffle_columns(m, rng) for _ in range(cfg.n_shuffles) for m in motif_list]
        real = scan_motifs(recs, motif_list, pvalue=cfg.pvalue, threads=cfg.threads)
        ctrl = scan_motifs(recs, controls, pvalue=cfg.pvalue, threads=cfg.threads) if controls else None
    if gff:
        # checked against the whole records, then cut to the part the store covers
        calls = [c for c in read_gff3(gff, full) if c.end <= covered[c.seq]]
        for c in calls:
            if c.rbs is not None and c.rbs[1] > covered[c.seq]:
                c.rbs = None
    else:
        calls = predict_genes(recs)
    enc = encode_store(store, sae, neurons=cfg.neurons, progress=progress)
    res = annotate_encoded(g, seq, bp_start, bp_end, enc, motif_list, real, ctrl, calls, cfg, progress=progress)
    res.summary.update({
        "store": str(Path(store_path).resolve()) if "://" not in str(store_path) else str(store_path),
        "sae": str(Path(sae_path).resolve()),
        "genome": str(Path(genome_path).resolve()),
        "motif_spec": motifs or "",
        "n_motifs": len(motif_list) if motif_list else 0,
        "gene_source": str(gff) if gff else "pyrodigal",
        "n_genes": len(calls),
        "layer": (store.attrs or {}).get("layer"),
        "model": ((store.attrs or {}).get("model") or {}).get("name"),
    })
    write_result(res, out, g, motif_list, real, overwrite=True)
    return res.summary


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "NA" if math.isnan(v) else f"{float(v):.6g}"
    return str(v)


def write_tsv(columns: dict, path: Path) -> None:
    """Columns (equal-length lists/arrays) as a TSV with a header; NaN as NA."""
    names = list(columns)
    n = len(columns[names[0]]) if names else 0
    with open(path, "w") as fh:
        fh.write("\t".join(names) + "\n")
        cols = [columns[k] for k in names]
        for i in range(n):
            fh.write("\t".join(_fmt(c[i]) for c in cols) + "\n")


def read_tsv(path) -> dict:
    """A TSV written by :func:`write_tsv` as a dict of string lists."""
    lines = Path(path).read_text().splitlines()
    head = lines[0].split("\t")
    rows = [ln.split("\t") for ln in lines[1:]]
    return {h: [r[i] for r in rows] for i, h in enumerate(head)}


def write_result(res: Result, out, genome: Genome, motifs=None, real_hits=None, overwrite: bool = False) -> Path:
    """Write a :class:`Result` as an annotation folder (atomically: temp folder, rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_tsv(res.features, tmp / "features.tsv")
    write_tsv(res.feature_motif, tmp / "feature_motif.tsv")
    write_tsv(res.feature_concept, tmp / "feature_concept.tsv")
    write_tsv(res.concept_summary, tmp / "concepts.tsv")
    ex = res.examples
    table = pa.table({
        "feature": pa.array(ex["feature"], pa.int32()),
        "rank": pa.array(ex["rank"], pa.int32()),
        "seq": pa.array(ex["seq"], pa.string()),
        "start": pa.array(ex["start"], pa.int64()),
        "end": pa.array(ex["end"], pa.int64()),
        "activation": pa.array(ex["activation"], pa.float32()),
        "context_start": pa.array(ex["context_start"], pa.int64()),
        "context": pa.array(ex["context"], pa.string()),
        "context_activation": pa.array(ex["context_activation"], pa.list_(pa.float32())),
    })
    pq.write_table(table, tmp / "examples.parquet")
    (tmp / "logos.json").write_text(json.dumps({"features": {str(k): v for k, v in res.logos.items()},
                                               "motifs": res.motif_logos}))
    tracks = tmp / "tracks"
    tracks.mkdir()
    for f, (s, e, v) in res.tracks.items():
        seq, bp = genome.local(s)
        names = np.asarray(genome.names, dtype=object)[seq]
        ends = bp + (e - s)
        with open(tracks / f"feature_{f}.bedGraph", "w") as fh:
            fh.write(f'track type=bedGraph name="feature {f}" description="SAE feature {f} activation"\n')
            fh.writelines(f"{n}\t{a}\t{b}\t{x:.4g}\n" for n, a, b, x in zip(names, bp.tolist(), ends.tolist(), v.tolist()))
    if motifs is not None and real_hits is not None and len(real_hits):
        labels = np.array([m.id + (f"_{m.alt_id}" if m.alt_id else "") for m in motifs], dtype=object)
        seqnames = np.asarray(genome.names, dtype=object)
        pv = np.maximum(np.asarray(real_hits.pvalue, dtype=np.float64), 1e-100)
        score = np.clip(np.round(-10 * np.log10(pv)), 0, 1000).astype(np.int64)
        strand = np.where(np.asarray(real_hits.strand) > 0, "+", "-")
        cols = zip(seqnames[np.asarray(real_hits.seq)], np.asarray(real_hits.start).tolist(),
                   np.asarray(real_hits.end).tolist(), labels[np.asarray(real_hits.motif)], score.tolist(), strand)
        with open(tmp / "motif_hits.bed", "w") as fh:
            fh.writelines(f"{a}\t{b}\t{c}\t{d}\t{e}\t{f}\n" for a, b, c, d, e, f in cols)
    (tmp / MARKER).write_text(json.dumps(res.summary, indent=2, default=_json_default))
    if out.exists():
        if not overwrite:
            shutil.rmtree(tmp)
            raise InputError(f"{out}: already exists")
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def describe(path) -> dict:
    """Summary of an annotation folder for ``genesae info``."""
    path = Path(path)
    try:
        summary = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        raise InputError(f"{path}: not a complete annotation folder (no readable {MARKER})") from None
    keys = ["n_features", "n_tokens", "fvu", "l0", "dead_fraction", "features_tested", "n_motifs",
            "features_with_motif", "features_with_gene_concept", "features_with_any_concept",
            "concepts_sae_f1_ge_0.5", "concepts_neuron_f1_ge_0.5", "genome", "store", "sae"]
    out = {"kind": "annotation folder (genesae annotate)", "path": str(path.resolve())}
    out.update({k: summary[k] for k in keys if k in summary})
    out["report"] = str(path / "report.html") if (path / "report.html").exists() else "not written (genesae report)"
    return out
