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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genesae_fast.annotate.core import Config, Genome
from genesae_fast.annotate.pieces import join_pieces
from genesae_fast.annotate.tables import Result
from genesae_fast.errors import InputError

MARKER = "summary.json"


def _genome_for(store, genome):
    """The FASTA to use: the given one, else the one recorded in the store."""
    if genome is None:
        genome = ((store.attrs or {}).get("genome") or {}).get("path")
        if not genome or not Path(genome).is_file():
            raise InputError(f"{store.path}: the store does not name a readable genome; pass --genome")
    return str(genome)


def load_sae(sae_path, device: str = "cpu"):
    """The SAE of a folder in any format ``load_any`` reads (ours, SAELens, sparsify,
    dictionary_learning), in eval mode; workers of the streamed annotation call this too."""
    from genesae_fast.sae_formats import load_any

    sae = load_any(sae_path, device=device)
    sae.eval()
    return sae


def n_latents_of(sae) -> int:
    """Number of features of an SAE (its config, else the encoder's rows)."""
    if hasattr(sae, "config") and "n_latents" in sae.config:
        return int(sae.config["n_latents"])
    return int(sae.W_enc.shape[0])


def load_inputs(store_path, sae_path, genome=None, device="cpu", strands="auto"):
    """Open the store and the SAE and read the genome; check they fit together.

    With a reverse-complement store (``strands``, see ``genesae_fast.store.strands``) the
    store reads ``[forward | RC]`` rows and the SAE pools their codes (``annotate.strands``).
    """
    from genesae_fast.annotate.strands import PooledSAE
    from genesae_fast.sae_formats import check_compatible
    from genesae_fast.sequences import read_fasta
    from genesae_fast.store.strands import SideBySideStore, open_for_annotation

    store = open_for_annotation(store_path, strands)
    if not store.has_coordinates:
        raise InputError(f"{store_path}: the store has no genome coordinates (imported?); annotate needs them")
    sae = load_sae(sae_path, device)
    if isinstance(store, SideBySideStore):
        sae = PooledSAE(sae)
    check_compatible(sae, store)
    genome_path = _genome_for(store, genome)
    records = read_fasta(genome_path)
    by_name = {r.name: r for r in records}
    missing = [n for n in store.sequence_names if n not in by_name]
    if missing:
        raise InputError(f"{genome_path}: sequence {missing[0]!r} of the store is not in this genome")
    return store, sae, records, genome_path


@dataclass
class Inputs:
    """What both annotation paths start from (records cut to the part the store covers)."""

    store: object
    sae: object
    genome_path: str
    recs: list
    genome: Genome
    motifs: list | None
    controls: list | None
    calls: list


def prepare(store_path, sae_path, genome=None, motifs=None, gff=None, cfg: Config | None = None,
            strands: str = "auto") -> Inputs:
    """Open and check the inputs, load motifs (and their shuffled controls), call genes."""
    from genesae_fast.annotate.genes import predict_genes, read_gff3
    from genesae_fast.sequences import Record

    cfg = cfg or Config()
    store, sae, records, genome_path = load_inputs(store_path, sae_path, genome, strands=strands)
    # records in the store's order (seq indices of the store's coordinates)
    by_name = {r.name: r for r in records}
    full = [by_name[n] for n in (store.sequence_names or [r.name for r in records])]
    # a store of a slice (extract --max-tokens) covers only a prefix: concepts outside it
    # would count as hits never found, so every record is cut to its covered length
    covered = _covered(store, len(full))
    recs = [Record(r.name, r.description, r.codes[:e], r.softmask[:e]) for r, e in zip(full, covered)]
    motif_list, controls = None, None
    if motifs:
        from genesae_fast.motifs import load_motifs, shuffle_columns

        motif_list = load_motifs(motifs)
        rng = np.random.default_rng(cfg.seed)
        controls = [shuffle_columns(m, rng) for _ in range(cfg.n_shuffles) for m in motif_list] or None
    if gff:
        # checked against the whole records, then cut to the part the store covers
        calls = [c for c in read_gff3(gff, full) if c.end <= covered[c.seq]]
        for c in calls:
            if c.rbs is not None and c.rbs[1] > covered[c.seq]:
                c.rbs = None
    else:
        calls = predict_genes(recs)
    return Inputs(store, sae, genome_path, recs, Genome.from_records(recs), motif_list, controls, calls)


def _covered(store, n_records: int) -> np.ndarray:
    """Per record, the end of the last token the store holds (read a coordinate chunk at a time)."""
    covered = np.zeros(n_records, np.int64)
    step = 1 << 20
    for a in range(0, store.n_rows, step):
        seq, _, bp_end, _ = store.coordinates(a, min(a + step, store.n_rows))
        np.maximum.at(covered, np.asarray(seq, np.int64), np.asarray(bp_end, np.int64))
    return covered


def _provenance(store_path, sae_path, inp: Inputs, motifs, gff) -> dict:
    attrs = inp.store.attrs or {}
    return {
        "store": str(Path(store_path).resolve()) if "://" not in str(store_path) else str(store_path),
        "sae": str(Path(sae_path).resolve()),
        "genome": str(Path(inp.genome_path).resolve()),
        "motif_spec": motifs or "",
        "n_motifs": len(inp.motifs) if inp.motifs else 0,
        "gene_source": str(gff) if gff else "pyrodigal",
        "n_genes": len(inp.calls),
        "layer": attrs.get("layer"),
        "model": (attrs.get("model") or {}).get("name"),
    }


def annotate(store_path, sae_path, out, genome=None, *, motifs: str | None = "jaspar2024:CORE:vertebrates", gff=None,
             cfg: Config | None = None, progress: bool = True, overwrite: bool = False,
             workers: int | None = None, checkpoint_blocks: int = 4, strands: str = "auto") -> dict:
    """Annotate every SAE feature, streaming the genome in blocks; writes ``out``, returns its summary.

    Parameters
    ----------
    store_path : activation store with coordinates
    sae_path : SAE folder
    out : annotation folder to write
    genome : FASTA (default: the genome recorded in the store)
    motifs : motif SPEC or file for ``load_motifs``; None for no motif concepts
    gff : GFF3 with CDS features; None to predict genes with pyrodigal
    cfg : Config (``cfg.block_bp``: bases per block)
    workers : worker processes (default: all cores; under torchrun the cores per local rank)
    checkpoint_blocks : blocks between two checkpoints (a killed run resumes from the last one)
    strands : "auto" (pool the reverse-complement pass when its store is there), "both", "forward"
    """
    from genesae_fast.annotate.core import gene_shifts
    from genesae_fast.annotate.genome_map import map_genome
    from genesae_fast.annotate.sources import gene_sources
    from genesae_fast.annotate.streamed import annotate_streamed, plan_job

    cfg = cfg or Config()
    out = Path(out)
    if (out / MARKER).exists() and not overwrite:
        raise InputError(f"{out}: an annotation is already there (use --overwrite)")
    inp = prepare(store_path, sae_path, genome, motifs, gff, cfg, strands)
    tmp = out.with_name(out.name + ".partial")
    work = tmp / ".work"
    work.mkdir(parents=True, exist_ok=True)
    # the bases move to a file that this process and the workers map: none of them holds the genome
    g = inp.genome = map_genome(inp.genome, work / "genome.npy")
    inp.recs = []
    job = plan_job(store_path, sae_path, g, cfg, motifs=inp.motifs, controls=inp.controls,
                   gene=gene_sources(inp.calls, g.offsets, g.lengths), shifts=gene_shifts(int(g.codes.shape[0]), cfg),
                   pieces=work / "pieces", sae_loader=load_sae, n_latents=n_latents_of(inp.sae))
    job.strands = "both" if hasattr(inp.store, "rc") else "forward"
    job.codes = code_cache_folder(work, inp.store.n_rows, inp.sae, passes=2 if job.strands == "both" else 1)
    res, tracks = annotate_streamed(job, work, workers=_workers(workers), checkpoint_blocks=checkpoint_blocks,
                                    progress=progress)
    res.summary.update(_provenance(store_path, sae_path, inp, motifs, gff))
    if _rank() == 0:
        write_result(res, out, g, overwrite=True, pieces=(work / "pieces", len(job.blocks), tracks,
                                                          bool(inp.motifs)), gene_calls=inp.calls)
    return res.summary


def code_cache_folder(work: Path, n_rows: int, sae, passes: int = 1) -> str | None:
    """Where pass 1 leaves each block's codes for passes 2 and 3 (every token encoded once),
    or None when they would take over half the free space of ``work``'s disk: then each
    pass encodes again (the same tables, slower). Size: rows x k x (4 + 2) bytes, times the
    ``passes`` pooled per row (2 for both strands: up to 2k codes a base)."""
    from genesae_fast.annotate.codecache import code_dtype

    k = int(getattr(sae, "k", 0) or 64) * int(passes)
    need = int(n_rows) * code_dtype(n_latents_of(sae), k).itemsize
    if need > shutil.disk_usage(work).free // 2:
        print(f"annotate: {need / 2**30:.1f} GiB of block codes would not fit {work}'s disk; "
              "encoding blocks in every pass", flush=True)
        return None
    return str(work / "codes")


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _workers(workers: int | None) -> int:
    """Worker processes: as asked, else the cores (shared by the local ranks under torchrun)."""
    if workers is not None:
        if workers < 1:
            raise InputError(f"--workers {workers}: must be at least 1")
        return int(workers)
    from genesae_fast.threads import usable_cores

    cores = usable_cores()
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def annotate_in_memory(store_path, sae_path, out, genome=None, motifs: str | None = "jaspar2024:CORE:vertebrates",
                       gff=None, cfg: Config | None = None, progress: bool = False, *, strands: str = "auto") -> dict:
    """The in-memory annotation (every token's codes held at once; about 1 GB per Mbp).

    The reference the streamed :func:`annotate` is tested against; same folder layout.
    """
    from genesae_fast.annotate.core import annotate_encoded
    from genesae_fast.annotate.encode import encode_store
    from genesae_fast.scan import scan_motifs

    cfg = cfg or Config()
    inp = prepare(store_path, sae_path, genome, motifs, gff, cfg, strands)
    real = ctrl = None
    if inp.motifs:
        real = scan_motifs(inp.recs, inp.motifs, pvalue=cfg.pvalue, threads=cfg.threads)
        ctrl = scan_motifs(inp.recs, inp.controls, pvalue=cfg.pvalue, threads=cfg.threads) if inp.controls else None
    seq, bp_start, bp_end, _ = inp.store.coordinates()
    enc = encode_store(inp.store, inp.sae, neurons=cfg.neurons, progress=progress)
    res = annotate_encoded(inp.genome, seq, bp_start, bp_end, enc, motifs=inp.motifs, real_hits=real,
                           control_hits=ctrl, gene_calls=inp.calls, cfg=cfg, progress=progress)
    _add_lm_knowledge(res, inp, real)

    if hasattr(inp.store, "rc") and inp.motifs:
        _strand_columns_in_memory(res, inp, store_path, sae_path, cfg, progress)
    res.summary.update(_provenance(store_path, sae_path, inp, motifs, gff))
    write_result(res, out, inp.genome, inp.motifs, real, overwrite=True, gene_calls=inp.calls)
    return res.summary


def _add_lm_knowledge(res, inp: Inputs, real_hits) -> None:
    """The "LM knows this concept" columns of the in-memory path (``lm_knowledge.in_memory``)."""
    from genesae_fast.annotate import lm_knowledge as LK
    from genesae_fast.annotate.sources import gene_sources

    g = inp.genome
    lm = LK.in_memory(inp.store, g, inp.motifs, real_hits, gene_sources(inp.calls, g.offsets, g.lengths))
    LK.add_columns(res, lm, None if lm is not None else LK.absent_reason(inp.store))

def _strand_columns_in_memory(res, inp: Inputs, store_path, sae_path, cfg: Config, progress: bool) -> None:
    """The per-strand motif columns (``annotate.strand_scores``) for the in-memory path: the same
    block-by-block pass the streamed path runs, in this process (its state in a temporary folder)."""
    import tempfile

    import torch

    from genesae_fast.annotate import stream as S
    from genesae_fast.annotate.passes import worker_init
    from genesae_fast.annotate.strand_scores import add_to_result
    from genesae_fast.annotate.streamed import plan_job

    job = plan_job(store_path, sae_path, inp.genome, cfg, motifs=inp.motifs, pieces="", sae_loader=load_sae,
                   n_latents=n_latents_of(inp.sae))
    job.strands = "both"
    threads = torch.get_num_threads()
    worker_init(job)  # sets this process up as a worker would be (one torch thread)
    try:
        with tempfile.TemporaryDirectory(prefix="genesae-strands-") as state:
            # one checkpoint at the end only: this reference path never resumes
            runner = S.Runner(job, Path(state), "in-memory", checkpoint_blocks=len(job.blocks), progress=progress)
            add_to_result(res, runner, cfg)
    finally:
        torch.set_num_threads(threads)


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


def write_result(res: Result, out, genome: Genome, motifs=None, real_hits=None, overwrite: bool = False, *,
                 pieces=None, gene_calls=None) -> Path:
    """Write a :class:`Result` as an annotation folder (atomically: temp folder, rename).

    ``gene_calls``: the gene calls the concepts came from, written as ``genes.bed`` (the
    atlas's gene track).

    ``pieces`` = (folder, n_blocks, track features, with motifs) of a streamed run: the motif
    hits and tracks are joined from its per-block pieces instead of ``res.tracks``/``real_hits``.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    if pieces is None:
        shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    write_tsv(res.features, tmp / "features.tsv")
    write_tsv(res.feature_motif, tmp / "feature_motif.tsv")
    write_tsv(res.feature_concept, tmp / "feature_concept.tsv")
    write_tsv(res.concept_summary, tmp / "concepts.tsv")
    _write_examples(res.examples, tmp / "examples.parquet")
    (tmp / "logos.json").write_text(json.dumps({"features": {str(k): v for k, v in res.logos.items()},
                                               "motifs": res.motif_logos}))
    (tmp / "tracks").mkdir(exist_ok=True)
    if gene_calls is not None:
        write_genes_bed(gene_calls, genome, tmp / "genes.bed")
    if pieces is not None:
        _join_streamed(tmp, *pieces)
    else:
        _write_tracks(res.tracks, tmp / "tracks", genome)
        if motifs is not None and real_hits is not None and len(real_hits):
            _write_motif_bed(real_hits, motifs, genome, tmp / "motif_hits.bed")
    (tmp / MARKER).write_text(json.dumps(res.summary, indent=2, default=_json_default))
    if out.exists():
        if not overwrite:
            shutil.rmtree(tmp)
            raise InputError(f"{out}: already exists")
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def write_genes_bed(calls, genome: Genome, path: Path) -> None:
    """Gene calls as BED6 (record, start, end, ``gene_<n>``, 0, strand), sorted by position."""
    order = sorted(range(len(calls)), key=lambda i: (calls[i].seq, calls[i].start, calls[i].end))
    with open(path, "w") as fh:
        for n, i in enumerate(order, 1):
            c = calls[i]
            fh.write(f"{genome.names[c.seq]}\t{c.start}\t{c.end}\tgene_{n}\t0\t{'+' if c.strand > 0 else '-'}\n")


def _track_header(f: int) -> str:
    return f'track type=bedGraph name="feature {f}" description="SAE feature {f} activation"\n'


def _join_streamed(tmp: Path, folder: Path, n_blocks: int, tracks: list, with_motifs: bool) -> None:
    """Join a streamed run's pieces into motif_hits.bed and the bedGraph tracks; drop the work folder."""
    folder = Path(folder)
    for f in tracks:
        join_pieces(folder / f"track_{f}", n_blocks, tmp / "tracks" / f"feature_{f}.bedGraph", _track_header(f))
    if with_motifs:
        join_pieces(folder / "motif_hits", n_blocks, tmp / "motif_hits.bed")
    shutil.rmtree(tmp / ".work", ignore_errors=True)


def _write_examples(ex: dict, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

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
    pq.write_table(table, path)


def _write_tracks(tracks: dict, folder: Path, genome: Genome) -> None:
    for f, (s, e, v) in tracks.items():
        seq, bp = genome.local(s)
        names = np.asarray(genome.names, dtype=object)[seq]
        ends = bp + (e - s)
        with open(folder / f"feature_{f}.bedGraph", "w") as fh:
            fh.write(_track_header(f))
            fh.writelines(f"{n}\t{a}\t{b}\t{x:.4g}\n" for n, a, b, x in zip(names, bp.tolist(), ends.tolist(), v.tolist()))


def _write_motif_bed(real_hits, motifs, genome: Genome, path: Path) -> None:
    labels = np.array([m.id + (f"_{m.alt_id}" if m.alt_id else "") for m in motifs], dtype=object)
    seqnames = np.asarray(genome.names, dtype=object)
    pv = np.maximum(np.asarray(real_hits.pvalue, dtype=np.float64), 1e-100)
    score = np.clip(np.round(-10 * np.log10(pv)), 0, 1000).astype(np.int64)
    strand = np.where(np.asarray(real_hits.strand) > 0, "+", "-")
    cols = zip(seqnames[np.asarray(real_hits.seq)], np.asarray(real_hits.start).tolist(),
               np.asarray(real_hits.end).tolist(), labels[np.asarray(real_hits.motif)], score.tolist(), strand)
    with open(path, "w") as fh:
        fh.writelines(f"{a}\t{b}\t{c}\t{d}\t{e}\t{f}\n" for a, b, c, d, e, f in cols)


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
            "concepts_sae_f1_ge_0.5", "concepts_neuron_f1_ge_0.5", "lm_knowledge", "causal_pairs_tested",
            "causal_pairs_specific", "genome", "store", "sae"]
    out = {"kind": "annotation folder (genesae annotate)", "path": str(path.resolve())}
    out.update({k: summary[k] for k in keys if k in summary})
    out["report"] = str(path / "report.html") if (path / "report.html").exists() else "not written (genesae report)"
    return out
