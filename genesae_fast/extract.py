"""Extraction driver: run a gene LM over a genome, one layer's activations into a store.

Work is cut into the store's row chunks. Each chunk is computed, written whole, fsynced
and committed (``genesae_fast.store.writer``); a rerun of the same command skips committed
chunks. Because the model's activations do not depend on where a call starts
(``GeneModel.extract``'s determinism contract), a killed and resumed run ends with the
same bytes as an uninterrupted one, and so do runs with any number of torchrun ranks:
rank 0 creates the store and writes the coordinates, the uncommitted chunks are split
into one contiguous run per rank, rank 0 folds the statistics at the end.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from genesae_fast.errors import InputError

# TF binding sites are ~6-20 bp; a block whose receptive field first reaches a typical
# motif's width gave the best SAE features in notes/sae-motif-calibration.md.
MOTIF_WIDTH_BP = 12


def default_layer(model) -> int:
    """The layer ``extract`` uses when none is given.

    If the model exposes receptive fields (``model.layer_info()["receptive_field_bp"]``,
    or ``model.receptive_fields``: indexed by layer 0..n_layers, in bp), the first block whose
    receptive field reaches ``MOTIF_WIDTH_BP`` (12 bp, a TF motif's width); otherwise the
    middle block, ``max(1, round(n_layers / 2))``.
    """
    n = int(model.n_layers)
    info = model.layer_info() if callable(getattr(model, "layer_info", None)) else {}
    rf = (info or {}).get("receptive_field_bp")
    if rf is None:
        rf = getattr(model, "receptive_fields", None)
        if callable(rf):
            rf = rf()
    if rf is not None:
        rf = list(rf)
        for layer in range(1, min(n, len(rf) - 1) + 1):
            if rf[layer] >= MOTIF_WIDTH_BP:
                return layer
        return n
    return max(1, min(n, (n + 1) // 2))


@dataclass
class _Plan:
    names: list
    lengths: list
    row_starts: np.ndarray  # [n_seq + 1]: rows of sequence i are [row_starts[i], row_starts[i+1])
    seq: np.ndarray
    bp_start: np.ndarray
    bp_end: np.ndarray
    token_id: np.ndarray
    sequences: list  # the sequence strings (only those with kept tokens are used)

    @property
    def n_rows(self) -> int:
        return int(self.row_starts[-1])


def _plan(records, model, max_tokens) -> _Plan:
    """Tokenise every record (cheap, no model forward) and lay the tokens out as rows."""
    names, lengths, counts, seqs = [], [], [], []
    cols = {"seq": [], "bp_start": [], "bp_end": [], "token_id": []}
    budget = None if max_tokens is None else int(max_tokens)
    for i, rec in enumerate(records):
        names.append(rec.name)
        lengths.append(len(rec))
        text = rec.sequence
        seqs.append(text)
        if budget is not None and budget <= 0 or len(text) == 0:
            counts.append(0)
            continue
        tok = model.tokenize(text)
        n = len(tok.token_ids) if budget is None else min(len(tok.token_ids), budget)
        if budget is not None:
            budget -= n
        counts.append(n)
        cols["seq"].append(np.full(n, i, dtype=np.int32))
        cols["bp_start"].append(np.asarray(tok.bp_start[:n], dtype=np.int64))
        cols["bp_end"].append(np.asarray(tok.bp_end[:n], dtype=np.int64))
        cols["token_id"].append(np.asarray(tok.token_ids[:n], dtype=np.int64))
    cat = {k: (np.concatenate(v) if v else np.zeros(0, dtype=np.int32 if k == "seq" else np.int64)) for k, v in cols.items()}
    row_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return _Plan(names, lengths, row_starts, cat["seq"], cat["bp_start"], cat["bp_end"], cat["token_id"], seqs)


class _Dist:
    """torch.distributed context: rank, world size, barrier and broadcast of objects."""

    def __init__(self):
        self.rank, self.world, self.owned = 0, 1, False
        self.dist = None
        world = int(os.environ.get("WORLD_SIZE", "1"))
        try:
            import torch.distributed as dist
        except ImportError:  # pragma: no cover - torch always ships it
            return
        if dist.is_available() and dist.is_initialized():
            self.dist = dist
        elif world > 1 and dist.is_available():
            # gloo needs no GPU; the group is only used for barriers and small objects.
            dist.init_process_group("gloo")
            self.dist, self.owned = dist, True
        if self.dist is not None:
            self.rank, self.world = self.dist.get_rank(), self.dist.get_world_size()

    def broadcast(self, obj):
        if self.dist is None or self.world == 1:
            return obj
        box = [obj]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self):
        if self.dist is not None and self.world > 1:
            self.dist.barrier()

    def close(self):
        if self.owned:
            self.dist.destroy_process_group()


def _my_chunks(remaining: list[int], rank: int, world: int) -> list[int]:
    """Contiguous share of the remaining chunks: consecutive chunks continue one model
    call, so each rank restarts the model as rarely as possible."""
    if not remaining:
        return []
    return [int(k) for k in np.array_split(np.asarray(remaining), world)[rank]]


def _runs(chunks: list[int]) -> list[tuple[int, int]]:
    """Maximal runs ``[k0, k1)`` of consecutive chunk indices."""
    runs = []
    for k in chunks:
        if runs and runs[-1][1] == k:
            runs[-1][1] = k + 1
        else:
            runs.append([k, k + 1])
    return [tuple(r) for r in runs]


def _resolve_model(model_spec_or_model, trust_remote_code, device):
    if isinstance(model_spec_or_model, (str, os.PathLike)):
        from genesae_fast.models import load_model

        return load_model(str(model_spec_or_model), device=device, trust_remote_code=trust_remote_code)
    return model_spec_or_model


def extract_to_store(genome_path, model_spec_or_model, layer=None, out="activations.zarr", window=None, stride=None,
                     max_tokens=None, dtype="float16", batch_size=8, overwrite=False, progress=True, *,
                     chunk_rows=None, codec="none", trust_remote_code=False, device=None,
                     verify_resume=True) -> str:
    """Extract one layer's activations of every token of a genome into a store.

    Resumable: rerunning the same call after an interruption (even ``kill -9``) continues
    from the last committed chunk and ends with the same bytes as an uninterrupted run.
    Under torchrun (``WORLD_SIZE`` > 1, or an initialised process group) each rank
    computes its share of chunks. On CPU each process computes with one thread (the bits
    of CPU kernels depend on the thread count); run more ranks to use more cores.

    Parameters
    ----------
    genome_path : str or os.PathLike
        FASTA (plain, gzip, BGZF).
    model_spec_or_model : str or GeneModel
        "builtin", a model folder, or a loaded model with the GeneModel interface.
    layer : int, optional
        0 = embeddings, i = output of block i; default :func:`default_layer`.
    out : str or os.PathLike
        Store path (local folder or fsspec URL).
    window, stride : int, optional
        Model window and step in tokens; the model's defaults when None.
    max_tokens : int, optional
        Keep only the first ``max_tokens`` tokens (records in file order).
    dtype : {"float16", "bfloat16", "float32"}
    batch_size : int
        Windows per forward pass (part of the configuration: it fixes the batch grid).
    overwrite : bool
        Replace whatever is at ``out``; otherwise a store made with other settings is
        refused.
    progress : bool
        tqdm bar with tokens/s and ETA (rank 0 only).
    chunk_rows : int, optional
        Rows per chunk (default about 8 MiB of activations).
    codec : {"none", "lz4", "zstd"}
    verify_resume : bool
        On resume, re-check committed chunks against their CRC-32 and redo bad ones.

    Returns
    -------
    str
        ``out``.
    """
    from genesae_fast.sequences import file_sha256, read_fasta
    from genesae_fast.store import layout
    from genesae_fast.store.writer import StoreWriter, config_hash

    layout.check_dtype(dtype)
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    if max_tokens is not None and int(max_tokens) < 1:
        raise InputError(f"--max-tokens {max_tokens}: must be at least 1")
    genome_path = str(genome_path)
    records = read_fasta(genome_path)
    model = _resolve_model(model_spec_or_model, trust_remote_code, device)
    if layer is None:
        layer = default_layer(model)
    layer = int(layer)
    if not 0 <= layer <= int(model.n_layers):
        raise InputError(f"--layer {layer}: model {model.name} has layers 0..{model.n_layers}")
    window = int(window if window is not None else model.default_window)
    stride = int(stride if stride is not None else model.default_stride)
    if window < 1 or not 1 <= stride <= window:
        raise InputError(f"--window {window} --stride {stride}: need 1 <= stride <= window")
    plan = _plan(records, model, max_tokens)
    if plan.n_rows == 0:
        raise InputError(f"{genome_path}: no tokens to extract (empty genome?)")
    identity = dict(model.identity)
    genome_sha = file_sha256(genome_path)
    config = {
        "kind": "extract",
        "model_name": identity.get("name", model.name),
        "model_sha256": identity.get("sha256", ""),
        "layer": layer,
        "genome_sha256": genome_sha,
        "window": window,
        "stride": stride,
        "max_tokens": None if max_tokens is None else int(max_tokens),
        "batch_size": int(batch_size),
    }
    sequences = [
        {"name": plan.names[i], "length": int(plan.lengths[i]),
         "row_start": int(plan.row_starts[i]), "row_end": int(plan.row_starts[i + 1])}
        for i in range(len(plan.names))
    ]
    attrs = {
        "model": {"name": identity.get("name", model.name), "path": str(identity.get("path", "")),
                  "sha256": identity.get("sha256", ""), "d_model": int(model.d_model),
                  "n_layers": int(model.n_layers)},
        "layer": layer,
        "window": window,
        "stride": stride,
        "max_tokens": config["max_tokens"],
        "batch_size": int(batch_size),
        "genome": {"path": os.path.abspath(genome_path), "sha256": genome_sha, "sequences": sequences},
    }
    d = int(model.d_model)
    import torch

    # On CPU, oneDNN's results depend on the intra-op thread count (measured: the built-in
    # model's activations differ in the last bits between 1 and 2 threads). One thread per
    # process makes the bytes independent of the machine, of OMP_NUM_THREADS and of the
    # number of torchrun ranks; use ranks for more cores.
    on_cpu = getattr(getattr(model, "device", None), "type", "cpu") == "cpu"
    threads_before = torch.get_num_threads()
    if on_cpu:
        torch.set_num_threads(1)
    ctx = _Dist()
    try:
        # Rank 0 creates or validates the store; a refusal reaches every rank.
        error, remaining = None, None
        writer = None
        if ctx.rank == 0:
            try:
                writer = StoreWriter.create(out, n_rows=plan.n_rows, d=d, dtype=dtype, config=config, attrs=attrs,
                                            chunk_rows=chunk_rows, codec=codec, coordinates=True,
                                            overwrite=overwrite)
                if not writer.coordinates_committed():
                    writer.write_coordinates(plan.seq, plan.bp_start, plan.bp_end, plan.token_id)
                done = writer.committed(verify=verify_resume)
                remaining = [k for k in range(writer.n_chunks) if k not in done]
            except InputError as exc:
                error = str(exc)
        error, remaining = ctx.broadcast((error, remaining))
        if error is not None:
            raise InputError(error)
        if writer is None:
            full = dict(config, n_rows=plan.n_rows, d=d, dtype=dtype,
                        chunk_rows=int(chunk_rows or layout.default_chunk_rows(d, dtype)), codec=codec,
                        has_coordinates=True)
            writer = StoreWriter.attach(out, config_hash(full))
        mine = _my_chunks(remaining, ctx.rank, ctx.world)
        _compute_chunks(writer, model, plan, mine, layer, window, stride, batch_size,
                        progress=progress and ctx.rank == 0, total_remaining=len(remaining))
        ctx.barrier()
        if ctx.rank == 0:
            writer.finalize()
        ctx.barrier()
    finally:
        ctx.close()
        if on_cpu:
            torch.set_num_threads(threads_before)
    return str(out)


def _compute_chunks(writer, model, plan, chunks, layer, window, stride, batch_size, progress, total_remaining):
    """Compute and write ``chunks`` (sorted); one model call per run of consecutive chunks."""
    from tqdm.auto import tqdm

    n_rows = sum(writer.chunk_bounds(k)[1] - writer.chunk_bounds(k)[0] for k in chunks)
    bar = tqdm(total=n_rows, unit="tok", unit_scale=True, desc="extract", disable=not progress,
               dynamic_ncols=True, smoothing=0.1)
    # One background writer thread: writes, fsyncs and commits overlap the next forward
    # passes; at most two chunks wait, which bounds memory.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genesae-store-write")
    pending = []

    def submit(k, buf):
        while len(pending) >= 2:
            pending.pop(0).result()
        pending.append(pool.submit(writer.write_chunk, k, buf))

    try:
        for k0, k1 in _runs(chunks):
            a, b = writer.chunk_bounds(k0)[0], writer.chunk_bounds(k1 - 1)[1]
            k, buf, filled = k0, None, 0
            for row, block in _blocks(model, plan, a, b, layer, window, stride, batch_size):
                acts = block
                pos = 0
                while pos < len(acts):
                    if buf is None:
                        c0, c1 = writer.chunk_bounds(k)
                        buf = np.empty((c1 - c0, writer.d), dtype=np.float32)
                        filled = 0
                    take = min(len(buf) - filled, len(acts) - pos)
                    buf[filled:filled + take] = acts[pos:pos + take]
                    filled += take
                    pos += take
                    if filled == len(buf):
                        submit(k, buf)
                        k, buf = k + 1, None
                bar.update(len(acts))
            if k != k1:
                raise RuntimeError(f"model produced too few tokens for chunks {k0}..{k1 - 1}")
        for f in pending:
            f.result()
        writer.flush()  # every commit record durable before the other ranks are told
    finally:
        pool.shutdown(wait=True)
        bar.close()


def _blocks(model, plan, a, b, layer, window, stride, batch_size):
    """Activations of rows ``[a, b)`` in order, as ``(row, float32 [t, d])`` pieces."""
    row = a
    while row < b:
        i = int(np.searchsorted(plan.row_starts, row, side="right") - 1)
        s0, s1 = int(plan.row_starts[i]), int(plan.row_starts[i + 1])
        t0, stop = row - s0, min(b, s1) - s0  # token range in sequence i
        t = t0
        gen = model.extract(plan.sequences[i], layer, window=window, stride=stride, batch_size=batch_size,
                            start_token=t0)
        try:
            for blk in gen:
                n = len(blk.token_ids)
                if n == 0:
                    continue
                # Check the model kept its contract: blocks in order from start_token.
                expect = plan.bp_start[s0 + t:s0 + t + min(n, stop - t)]
                if not np.array_equal(np.asarray(blk.bp_start[:len(expect)]), expect):
                    raise RuntimeError(
                        f"model {model.name} returned tokens out of order for sequence {plan.names[i]} at token {t}"
                    )
                take = min(n, stop - t)
                acts = np.asarray(blk.activations[:take], dtype=np.float32)
                if acts.shape[1] != int(model.d_model):
                    raise RuntimeError(f"model {model.name} returned width {acts.shape[1]}, expected {model.d_model}")
                yield s0 + t, acts
                t += take
                if t >= stop:
                    break
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()
        if t < stop:
            raise RuntimeError(f"model {model.name} stopped early in sequence {plan.names[i]} ({t} of {stop} tokens)")
        row = s0 + stop


__all__ = ["extract_to_store", "default_layer", "MOTIF_WIDTH_BP"]
