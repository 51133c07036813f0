"""Helpers for the streamed-annotation tests: build small stores, compare annotation folders."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

TABLES = ("features.tsv", "feature_motif.tsv", "feature_concept.tsv", "concepts.tsv")


def make_store(d: Path, records: list[tuple[str, str]], latents: int = 64, k: int = 4, n_motifs: int = 8,
               lm_bits: bool = True) -> dict:
    """FASTA of ``records``, its built-in-LM store (with LM bits: the streamed and in-memory
    "LM knows this concept" columns are compared too), a random SAE and a MEME file of JASPAR motifs."""
    import torch

    from genesae_fast.extract import extract_to_store
    from genesae_fast.motifs import load_motifs, write_meme
    from genesae_fast.sae import TopKSAE
    from genesae_fast.sequences import write_fasta
    from genesae_fast.store import ActivationStore

    d.mkdir(parents=True, exist_ok=True)
    fasta = d / "g.fa"
    write_fasta(records, fasta)
    store = d / "s.zarr"
    extract_to_store(fasta, "builtin", None, store, progress=False, lm_bits=lm_bits)
    st = ActivationStore.open(store)
    torch.manual_seed(0)
    sae = TopKSAE(st.d, latents, k)
    sae.input_mean.copy_(torch.as_tensor(st.mean, dtype=torch.float32))
    sae.input_scale = float(st.norm_scale)
    sae.save(d / "sae")
    motifs = d / "m.meme"
    write_meme(load_motifs()[:n_motifs], motifs)
    return {"dir": d, "fasta": fasta, "store": store, "sae": d / "sae", "motifs": motifs}


def _cell_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    # tables are printed with 6 significant digits: float sums in another order may
    # round the last digit the other way
    return math.isclose(x, y, rel_tol=2e-5, abs_tol=1e-9)


def assert_same_tsv(a: Path, b: Path) -> None:
    la, lb = a.read_text().splitlines(), b.read_text().splitlines()
    assert la[0] == lb[0], f"{a.name}: headers differ"
    assert len(la) == len(lb), f"{a.name}: {len(la)} vs {len(lb)} lines"
    for i, (ra, rb) in enumerate(zip(la[1:], lb[1:]), 2):
        ca, cb = ra.split("\t"), rb.split("\t")
        bad = [h for h, x, y in zip(la[0].split("\t"), ca, cb) if not _cell_equal(x, y)]
        assert not bad, f"{a.name}: line {i} differs in {bad}: {ra!r} vs {rb!r}"


def assert_close_json(a, b, path: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {set(a) ^ set(b)}"
        for k in a:
            assert_close_json(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: lengths"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close_json(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def assert_same_annotation(a: Path, b: Path, motif_bed: bool = True) -> None:
    """Two annotation folders hold the same tables (floats up to rounding)."""
    import pyarrow.parquet as pq

    for name in TABLES:
        assert_same_tsv(a / name, b / name)
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    for s in (sa, sb):  # provenance: paths of the two runs' inputs
        for key in ("store", "sae", "genome"):
            s.pop(key, None)
    assert_close_json(sa, sb, "summary")
    assert_close_json(json.loads((a / "logos.json").read_text()), json.loads((b / "logos.json").read_text()), "logos")
    ea, eb = (pq.read_table(p / "examples.parquet").to_pydict() for p in (a, b))
    assert list(ea) == list(eb)
    for col in ea:
        if col in ("activation", "context_activation"):
            assert_close_json(ea[col], eb[col], col)
        else:
            assert ea[col] == eb[col], col
    ta = sorted(p.name for p in (a / "tracks").iterdir())
    assert ta == sorted(p.name for p in (b / "tracks").iterdir())
    for name in ta:
        assert (a / "tracks" / name).read_text() == (b / "tracks" / name).read_text(), name
    if motif_bed:
        # the in-memory path writes hits motif by motif, the streamed one in genome order
        ha = sorted((a / "motif_hits.bed").read_text().splitlines())
        hb = (b / "motif_hits.bed").read_text().splitlines()
        assert ha == sorted(hb)
        key = [(ln.split("\t")[0], int(ln.split("\t")[1])) for ln in hb]
        assert all(x[1] <= y[1] for x, y in zip(key, key[1:]) if x[0] == y[0]), "motif_hits.bed is not sorted"


def random_records(rng: np.random.Generator, lengths, n_runs: int = 0, prefix: str = "r") -> list:
    """Random records; ``n_runs`` runs of N (1..300 bp) put into each record longer than 1 kbp."""
    out = []
    for i, n in enumerate(lengths):
        s = np.array(list("ACGT"))[rng.integers(0, 4, n)]
        if n > 1000:
            for _ in range(n_runs):
                a = int(rng.integers(0, n - 1))
                s[a:a + int(rng.integers(1, 300))] = "N"
        out.append((f"{prefix}{i}", "".join(s)))
    return out


def annotate_as_rank(rank: int, world: int, init_file: str, run: dict, out: str, cfg) -> None:
    """One gloo rank of a torchrun-style annotation of ``run`` into ``out`` (for ``mp.spawn``);
    each rank logs the blocks it ran as "pass block" lines to ``out.blocks<rank>``."""
    import torch.distributed as dist

    from genesae_fast.annotate import annotate, stream

    log = open(f"{out}.blocks{rank}", "w")
    stream.BLOCK_HOOK = lambda name, b: log.write(f"{name} {b}\n")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        annotate(run["store"], run["sae"], out, motifs=str(run["motifs"]), cfg=cfg, progress=False, workers=1)
    finally:
        log.close()
        dist.destroy_process_group()
