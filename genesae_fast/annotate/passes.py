"""The work on one genome block, for each of the three passes of the streamed annotation.

Pass 1 (firing statistics): feature counts, maxima and value bins, neuron maxima, the
reconstruction error, k-mers; the block's codes go to the code cache (:mod:`.codecache`),
where passes 2 and 3 read them instead of encoding again. Pass 2 (needs the maxima: thresholds are fractions of them):
bases on, concept counts for motifs, their shuffled controls, gene concepts and their
shifted controls, the neuron baseline, peak candidates; the block's motif hits go to a
BED piece. Pass 3 (needs the chosen examples and the best features): example windows'
activations and track pieces. A :class:`Job` holds what every block needs; workers get it
once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genesae_fast.annotate import concepts as C
from genesae_fast.annotate import tables as TB
from genesae_fast.annotate.accumulators import Moments, Pass2, Pass3, Tally, narrow, value_bins
from genesae_fast.annotate.peaks import Candidates
from genesae_fast.annotate.pieces import bed_lines, bedgraph_lines, write_piece
from genesae_fast.annotate.sources import overlapping
from genesae_fast.annotate.window import ENCODE_ROWS, read_window, window_rows


@dataclass
class Job:
    """Everything the block functions need (pickled once per worker)."""

    store_path: str
    sae_path: str
    genome: object  # core.Genome
    cfg: object  # core.Config
    blocks: list
    split_block: int
    n_latents: int
    pieces: str
    motifs: list | None = None
    controls: list | None = None
    gene: dict | None = None  # name -> source
    shifts: list = field(default_factory=list)
    sae_loader: object = None
    strands: str = "forward"  # "both": [forward | RC] rows, pooled codes (annotate.strands)
    codes: str | None = None  # folder of the block code cache (None: encode in every pass)


_OPEN: dict = {}


def worker_init(job: Job) -> None:
    """Pool initializer: one torch thread per worker, the job kept for every block.

    A job whose genome travelled without its bases (:func:`.genome_map.for_workers`) gets
    them back as a read-only memory map: no worker holds the genome."""
    import torch

    from genesae_fast.annotate.genome_map import reattach

    torch.set_num_threads(1)
    _OPEN.clear()
    _OPEN["job"] = reattach(job)


_LIBC: list = []


def trim_heap() -> None:
    """glibc: give the free parts of the heap back to the system. A block's arrays under
    glibc's (growing) mmap threshold come from the heap; once freed they would stay in the
    process's RSS, and the RSS crept up block after block. Elsewhere: nothing."""
    if not _LIBC:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
        except OSError:
            libc = None
        _LIBC.append(getattr(libc, "malloc_trim", None))
    if _LIBC[0] is not None:
        _LIBC[0](0)


def _resources():
    """The worker's store, SAE and code cache (opened on first use)."""
    if "store" not in _OPEN:
        from genesae_fast.annotate.codecache import CodeCache
        from genesae_fast.store import ActivationStore

        job = _OPEN["job"]
        _OPEN["store"] = ActivationStore.open(job.store_path)
        _OPEN["sae"] = LazySAE(job.sae_loader, job.sae_path)
        if job.strands == "both":
            from genesae_fast.annotate.strands import PooledSAE
            from genesae_fast.store.strands import open_for_annotation

            _OPEN["store"], _OPEN["sae"] = open_for_annotation(job.store_path, "both"), PooledSAE(_OPEN["sae"])
        _OPEN["cache"] = CodeCache(job.codes, job.n_latents) if job.codes else None
    return _OPEN["job"], _OPEN["store"], _OPEN["sae"]


class LazySAE:
    """The SAE, loaded on first use: workers of passes 2 and 3 find the codes in the cache
    and never pay for loading it (nor for the torch modules its custom ops import)."""

    def __init__(self, loader, path: str):
        self._loader, self._path, self._sae = loader, path, None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._sae is None:
            self._sae = self._loader(self._path)
        return getattr(self._sae, name)


def _window(job: Job, store, sae, lo: int, hi: int, *, need_x: bool = True):
    """The window ``[lo, hi)`` with its codes from the cache where pass 1 left them."""
    first = max(int(np.searchsorted(_starts(job), lo, side="right")) - 2, 0)  # tokens may start a block earlier
    last = int(np.searchsorted(_starts(job), max(hi - 1, lo), side="right"))
    return read_window(store, sae, job.genome, lo, hi, job.split_block, job.n_latents, cache=_OPEN.get("cache"),
                       blocks=range(first, last), need_x=need_x)


def _starts(job: Job) -> np.ndarray:
    if "starts" not in _OPEN:
        _OPEN["starts"] = np.array([g0 for g0, _ in job.blocks], np.int64)
    return _OPEN["starts"]


def run_block(task):
    """Pool entry point: ``task = (pass name, block index, pass parameters)``."""
    from genesae_fast.annotate.genome_map import remap

    name, b, params = task
    _OPEN["job"] = remap(_OPEN["job"])
    if name == "lm_knowledge":  # these two modules build on this one, so they are imported here
        from genesae_fast.annotate.lm_knowledge import lm_block as fn
    elif name == "strands":
        from genesae_fast.annotate.strand_scores import strand_block as fn
    else:
        fn = {"moments": moments_block, "counts": counts_block, "contexts": contexts_block}[name]
    out = fn(b, params)
    trim_heap()
    return b, out


# ---------------------------------------------------------------------------- pass 1
def moments_block(b: int, params) -> Moments:
    """Firing statistics of the tokens that start in block ``b``."""
    from genesae_fast.kmers import count_kmers

    job, store, sae = _resources()
    g0, g1 = job.blocks[b]
    F, d = job.n_latents, store.d
    m = Moments.empty(F, d)
    r0, r1 = _owned_rows(store, job.genome, g0, g1)
    part, codes = np.zeros(2 + F), []
    for a0 in range(r0, r1, ENCODE_ROWS):  # bounded temporaries (dense pre-activations)
        codes.append(_moments_rows(m, part, store, sae, a0, min(a0 + ENCODE_ROWS, r1)))
    if codes and _OPEN.get("cache") is not None:
        _OPEN["cache"].write(b, r0, np.concatenate([v for v, _ in codes]), np.concatenate([i for _, i in codes]))
    del codes
    m.partials = {b: part}
    m.vbins = narrow(m.vbins)
    G, k = job.genome.codes.shape[0], job.cfg.kmer_k
    km = count_kmers([job.genome.codes[g0:min(g1 + k - 1, G)]], k, threads=1)  # k-mers starting in the block
    m.kmers = (np.asarray(km[0], np.uint64), np.asarray(km[1], np.int64))
    return m


def _moments_rows(m: Moments, part: np.ndarray, store, sae, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold rows ``[r0, r1)`` into ``m`` and the block's float partials ``part`` (in place);
    returns their codes (vals, idx) for the code cache."""
    from genesae_fast.annotate.encode import encode_rows

    F = m.n_active.shape[0]
    x = store.read_rows(r0, r1)
    vals, idx, x_hat = encode_rows(sae, x)
    a = C.SparseActs.from_topk(vals, idx, F)
    c = x.astype(np.float64) - np.asarray(store.mean, np.float64)
    m.n_tokens += r1 - r0
    m.nnz += int(a.ptr[-1])
    m.n_active += np.bincount(a.feat, minlength=F).astype(np.int64)
    np.maximum.at(m.fmax, a.feat, a.val)
    m.vbins += np.bincount(a.feat.astype(np.int64) * m.vbins.shape[1] + value_bins(a.val),
                           minlength=m.vbins.size).reshape(m.vbins.shape)
    m.dmax = np.maximum(m.dmax, np.concatenate([c.max(axis=0), (-c).max(axis=0)]).astype(np.float32))
    part[0] += float(np.sum((x - x_hat) ** 2, dtype=np.float64))
    part[1] += float(np.sum(c * c))
    part[2:] += np.bincount(a.feat, weights=a.val, minlength=F)
    return vals, idx


def _owned_rows(store, genome, g0: int, g1: int) -> tuple[int, int]:
    """Rows of the tokens whose first base is in ``[g0, g1)``."""
    r0, r1 = window_rows(store, genome, g0, g1)
    if r1 <= r0:
        return 0, 0
    seq, bs, _, _ = store.coordinates(r0, r1)
    start = genome.offsets[np.asarray(seq, np.int64)] + np.asarray(bs, np.int64)
    own = np.flatnonzero((start >= g0) & (start < g1))
    return (r0 + int(own[0]), r0 + int(own[-1]) + 1) if own.size else (0, 0)


# ---------------------------------------------------------------------------- pass 2
@dataclass
class CountParams:
    """Pass-2 parameters: thresholds, candidate cut-offs, the neuron floor."""

    thr: np.ndarray  # (F, T)
    fmax: np.ndarray  # (F,)
    cutoff: np.ndarray  # (F,) value bin
    keep: int
    nthr: np.ndarray | None  # (2d, Tn)
    mean: np.ndarray


def _scan(job: Job, motifs, lo: int, hi: int, pad: int):
    """Hits of ``motifs`` starting in ``[lo - pad, hi)``: (motif, start, end, strand, pvalue, seq) global."""
    from genesae_fast.scan import scan_motifs

    g = job.genome
    a, z = max(lo - pad, 0), min(hi + pad, g.codes.shape[0])
    first = int(np.searchsorted(g.offsets, a, side="right") - 1)
    last = int(np.searchsorted(g.offsets, max(z - 1, a), side="right") - 1)
    segs = []
    for r in range(first, last + 1):
        s0, s1 = max(a, int(g.offsets[r])), min(z, int(g.offsets[r] + g.lengths[r]))
        if s1 > s0:
            segs.append((r, s0, s1))
    hits = scan_motifs([g.codes[s0:s1] for _, s0, s1 in segs], motifs, pvalue=job.cfg.pvalue, threads=1)
    seg_start = np.array([s0 for _, s0, _ in segs], np.int64)
    seg_rec = np.array([r for r, _, _ in segs], np.int64)
    si = np.asarray(hits.seq, np.int64)
    start = seg_start[si] + np.asarray(hits.start, np.int64) if len(hits) else np.zeros(0, np.int64)
    end = seg_start[si] + np.asarray(hits.end, np.int64) if len(hits) else np.zeros(0, np.int64)
    keep = start < hi
    return {"motif": np.asarray(hits.motif, np.int64)[keep], "start": start[keep], "end": end[keep],
            "strand": np.asarray(hits.strand)[keep], "pvalue": np.asarray(hits.pvalue)[keep],
            "seq": seg_rec[si][keep] if len(hits) else np.zeros(0, np.int64)}


def _gene_hits(job: Job, g0: int, g1: int) -> list:
    """Per gene concept (real, then each concept's shifted copies): (found hits, tp hits) of the block."""
    from genesae_fast.annotate.sources import ShiftedSource

    out = []
    srcs = list(job.gene.values()) if job.gene else []
    G = int(job.genome.codes.shape[0])
    allsrc = srcs + [ShiftedSource(s, sh, G) for s in srcs for sh in job.shifts]
    for src in allsrc:
        out.append((src.starting(g0, g1), overlapping(src, g0, g1)))
    return out


def _motif_hits(hits: dict, n: int, g0: int, g1: int) -> list:
    """Per motif index: (found hits starting in the block, tp hits cut to the block)."""
    order = np.argsort(hits["motif"], kind="stable")
    bounds = np.searchsorted(hits["motif"][order], np.arange(n + 1))
    out = []
    for m in range(n):
        sel = order[bounds[m]:bounds[m + 1]]
        s, e = hits["start"][sel], hits["end"][sel]
        f = (s >= g0) & (s < g1)
        t = e > g0
        out.append(((s[f], e[f]), (np.maximum(s[t], g0), np.minimum(e[t], g1))))
    return out


# concepts counted together: their (concepts, F, 2, T+1) histograms stay near 16 MB and their
# positive bases near 2M per block whatever the number of motifs or genes (all at once, 1758
# concepts x 768 features took ~0.6 GB); entries per chunk of the bases-on counts
TALLY_BINS = 1 << 21
TALLY_BASES = 1 << 21
TALLY_ENTRIES = 1 << 21


def _hits_of(concept_hits: list, which: int, sel, origin: int, first: int):
    """Starts, ends (window coordinates) and concept index - ``first`` of the hits of concepts ``sel``."""
    parts = [concept_hits[i][which] for i in sel]
    s = np.concatenate([a for a, _ in parts] + [np.zeros(0, np.int64)]) - origin
    e = np.concatenate([b for _, b in parts] + [np.zeros(0, np.int64)]) - origin
    cid = (np.repeat(np.asarray(sel, np.int64) - first, [a.shape[0] for a, _ in parts]) if parts
           else np.zeros(0, np.int64))
    return s, e, cid


def _unit_concepts(concept_hits: list) -> set:
    """Concepts of 1-bp hits at distinct bases (codon positions), none running in from before
    the block: a hit is found iff its base is on, so their found counts are their tp counts."""
    return {i for i, ((s, e), (ts, te)) in enumerate(concept_hits)
            if s.size and np.all(e - s == 1) and np.unique(s).shape[0] == s.shape[0]
            and ts.shape == s.shape and np.all(te - ts == 1)}


def _concept_groups(concept_hits: list, bins_per_concept: int) -> list[range]:
    """Consecutive concepts with at most ``TALLY_BINS`` histogram bins and about
    ``TALLY_BASES`` positive bases per group (at least one concept each)."""
    bases = [int(np.sum(e - s)) for _, (s, e) in concept_hits]
    per_group = max(1, TALLY_BINS // bins_per_concept)
    out, c0, total = [], 0, 0
    for i, n in enumerate(bases):
        if i > c0 and (i - c0 >= per_group or total + n > TALLY_BASES):
            out.append(range(c0, i))
            c0, total = i, 0
        total += n
    if bases:
        out.append(range(c0, len(bases)))
    return out


def _tally(acts, layout, levels, T: int, concept_hits: list) -> Tally:
    """Counts of every concept of the block, as int32 (a block's counts fit); hits in global coordinates.

    ``concept_hits[i]`` = ((found starts, ends), (tp starts, ends)): the hits starting in
    the block, and every hit cut to the block (its positive bases).
    """
    n_c, o, F = len(concept_hits), layout.origin, acts.n_features
    if n_c == 0:
        return Tally.empty(0, F, T)
    unit = _unit_concepts(concept_hits)
    tp, found = np.zeros((n_c, F, 2, T), np.int32), np.zeros((n_c, F, 2, T), np.int32)
    n_pos = np.zeros((n_c, 2), np.int64)
    for grp in _concept_groups(concept_hits, F * 2 * (T + 1)):
        c0 = grp.start
        hist, n_pos[c0:grp.stop] = C.multi_tp_levels(acts, layout, levels, T, *_hits_of(concept_hits, 1, grp, o, c0),
                                                     len(grp))
        tp[c0:grp.stop] = C._above(hist)
        del hist
        rest = [i for i in grp if i not in unit]
        hist = C.multi_found_levels(acts, layout, levels, T, *_hits_of(concept_hits, 0, rest, o, c0), len(grp))
        found[c0:grp.stop] = C._above(hist)
        del hist
    for i in unit:
        found[i] = tp[i]
    fs, _, fcid = _hits_of(concept_hits, 0, range(n_c), o, 0)
    n_hits = np.bincount(fcid * 2 + layout.part(fs), minlength=2 * n_c).reshape(n_c, 2).astype(np.int64)
    return Tally(tp, found, n_hits, n_pos)


def counts_block(b: int, p: CountParams) -> Pass2:
    """Pass 2 on block ``b``."""
    job, store, sae = _resources()
    g0, g1 = job.blocks[b]
    F, T = p.thr.shape
    pad = max((m.probs.shape[0] for m in job.motifs), default=1) - 1 if job.motifs else 0
    real = _scan(job, job.motifs, g0, g1, pad) if job.motifs else None
    ctrl = _scan(job, job.controls, g0, g1, pad) if job.controls else None
    gene = _gene_hits(job, g0, g1)
    hi = max([g1] + [int(h[0][1].max()) for h in gene if h[0][1].size]
             + [int(h["end"].max()) for h in (real, ctrl) if h is not None and h["end"].size])
    w = _window(job, store, sae, g0, hi, need_x=p.nthr is not None)
    own = w.owned(g0, g1)
    levels = C.entry_levels(w.acts, p.thr)
    res = _feature_counts(w, own, p)
    nm = len(job.motifs) if job.motifs else 0
    motif_hits = _motif_hits(real, nm, g0, g1) if real is not None else []
    if real is not None:
        ctrl_hits = _motif_hits(ctrl, len(job.controls), g0, g1) if ctrl is not None else []
        res.motif = _tally(w.acts, w.layout, levels, T, motif_hits + ctrl_hits).narrow()
        write_piece(Path(job.pieces) / "motif_hits", b, bed_lines(real, job.motifs, job.genome, g0, g1))
    if job.gene is not None:
        res.gene = _tally(w.acts, w.layout, levels, T, gene).narrow()
    if p.nthr is not None:
        _neuron_counts(res, w, own, p, motif_hits + gene[:len(job.gene or {})])
    return res


def _owned_acts(acts: C.SparseActs, own: np.ndarray) -> tuple[C.SparseActs, np.ndarray]:
    """The entries of the tokens ``own`` (a contiguous run) and their window token indices."""
    tok = np.repeat(np.arange(acts.n_tokens), np.diff(acts.ptr))
    e = np.flatnonzero(own[tok])
    ptr = np.concatenate([[0], np.cumsum(np.diff(acts.ptr)[own])]).astype(np.int64)
    return C.SparseActs(ptr, acts.feat[e], acts.val[e], acts.n_features), tok[e]


def _on_counts(sub: C.SparseActs, w, own: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Bases on of the own tokens, (F, 2, T); tokens weigh their length, parts by first base."""
    lay = C.Layout(np.zeros(0, np.int64), w.tok_start[own], w.tok_end[own], w.layout.block)
    # tokens per chunk from the entries per token (the neuron baseline has tens a token)
    per = float(sub.ptr[-1]) / max(sub.n_tokens, 1)
    return C.on_counts(sub, lay, thr, chunk_tokens=max(1024, int(TALLY_ENTRIES / max(per, 1.0))))


def _feature_counts(w, own: np.ndarray, p: CountParams) -> Pass2:
    """Bases on, value histogram and peak candidates of the block's own tokens."""
    F = p.thr.shape[0]
    sub, tok = _owned_acts(w.acts, own)
    hist = TB.value_histogram(sub.val, sub.feat, p.fmax, F)
    sel = value_bins(sub.val) >= p.cutoff[sub.feat]  # holds each feature's top ``keep`` entries
    t = tok[sel]
    cand = Candidates.from_entries(sub.feat[sel], sub.val[sel], w.r0 + t, w.tok_start[t], w.tok_end[t], F,
                                   keep=p.keep)
    return Pass2(_on_counts(sub, w, own, p.thr), hist, None, None, None, np.zeros(0, np.int64),
                 np.zeros(0, np.int64), cand, p.keep)


def _neuron_counts(res: Pass2, w, own: np.ndarray, p: CountParams, concept_hits: list) -> None:
    """The neuron baseline's counts: raw directions (+ and - around the store mean)."""
    # only entries above the lowest threshold matter (the in-memory path's floor is the same)
    n = _neuron_acts(w.x, p.mean, p.nthr[:, 0])
    levels = C.entry_levels(n, p.nthr)
    res.neuron = _tally(n, w.layout, levels, p.nthr.shape[1], concept_hits)
    sub, _ = _owned_acts(n, own)
    res.neuron_active = np.bincount(sub.feat, minlength=n.n_features).astype(np.int64)
    res.neuron_on = _on_counts(sub, w, own, p.nthr)


# rows made dense at once for the neuron baseline (bounds its float temporaries)
NEURON_ROWS = 32768


def _neuron_acts(x: np.ndarray, mean: np.ndarray, floor: np.ndarray) -> C.SparseActs:
    """Entries above ``floor`` of the centered rows ``x`` (n, d) in both directions (2d features),
    built a slice of rows at a time: the same CSR as one ``from_dense`` of all rows."""
    parts = []
    for a in range(0, max(x.shape[0], 1), NEURON_ROWS):
        c = (x[a:a + NEURON_ROWS].astype(np.float64) - mean).astype(np.float32)
        parts.append(C.SparseActs.from_dense(np.concatenate([c, -c], axis=1), floor))
    return C.SparseActs.concat(parts)


# ---------------------------------------------------------------------------- pass 3
@dataclass
class ContextParams:
    """Pass-3 parameters: the block's examples (index, spec) and the track features."""

    examples: list
    tracks: list


def contexts_block(b: int, p: ContextParams) -> Pass3:
    """Activations on the block's example windows; track pieces of its own tokens."""
    job, store, sae = _resources()
    g0, g1 = job.blocks[b]
    lo = min([g0] + [s.lo for _, s in p.examples])
    hi = max([g1] + [s.hi for _, s in p.examples])
    out = Pass3()
    if not p.examples and not p.tracks:
        return out
    w = _window(job, store, sae, lo, hi, need_x=False)
    for i, s in p.examples:
        out.contexts[i] = _context(w, s)
    if p.tracks:
        own = w.owned(g0, g1)
        for f in p.tracks:
            write_piece(Path(job.pieces) / f"track_{f}", b, bedgraph_lines(w, own, f, job.genome))
    return out


def _context(w, s) -> np.ndarray:
    """Feature ``s.feature`` on every base of the window ``[s.lo, s.hi)``."""
    pos = np.arange(s.lo, s.hi) - w.lo
    tok = w.layout.pos_token[pos]
    val = np.zeros(pos.shape[0], np.float32)
    has = np.flatnonzero(tok >= 0)
    entries, owner = C._gather(w.acts, tok[has])
    mine = w.acts.feat[entries] == s.feature
    val[has[owner[mine]]] = w.acts.val[entries[mine]]
    return val
