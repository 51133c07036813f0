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
from genesae_fast.threads import usable_cores

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


def stream_records(path):
    """The records of a FASTA file (plain, gzip or BGZF) one at a time: memory holds one
    record, never the genome. Yields ``sequences.Record``; errors name the file and the
    line where the bad record starts."""
    import gzip

    from genesae_fast.sequences import parse_fasta_bytes, read_bytes

    p = str(path)
    if not os.path.isfile(p):
        read_bytes(p)  # the usual one-line error: missing, a folder, no permission
    with open(p, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    lines, first, n, header = [], 1, 0, False
    try:
        with (gzip.open(p, "rb") if gz else open(p, "rb")) as fh:
            for line in fh:
                n += 1
                if line.startswith(b">"):
                    if header:  # lines before the first header stay with the first record
                        yield from parse_fasta_bytes(b"".join(lines), f"{p} (record from line {first})")
                        lines, first = [], n
                    header = True
                lines.append(line)
    except (OSError, EOFError) as exc:
        raise InputError(f"{p}: corrupt or truncated gzip data ({exc})") from None
    if lines:
        yield from parse_fasta_bytes(b"".join(lines), f"{p} (record from line {first})")


@dataclass
class _Plan:
    """Where each record's tokens go in the store. Only per-record numbers are kept; the
    sequences are streamed from the file again when needed (:class:`_Cursor`)."""

    genome_path: str
    names: list
    lengths: list
    row_starts: np.ndarray  # [n_seq + 1]: rows of sequence i are [row_starts[i], row_starts[i+1])

    @property
    def n_rows(self) -> int:
        return int(self.row_starts[-1])

    def count(self, i: int) -> int:
        """Tokens of record ``i`` kept in the store."""
        return int(self.row_starts[i + 1] - self.row_starts[i])


def _plan(genome_path, model, max_tokens) -> _Plan:
    """Count every record's tokens (tokenising, no model forward) and lay them out as rows."""
    names, lengths, counts = [], [], []
    budget = None if max_tokens is None else int(max_tokens)
    for rec in stream_records(genome_path):
        names.append(rec.name)
        lengths.append(len(rec))
        if budget is not None and budget <= 0 or len(rec) == 0:
            counts.append(0)
            continue
        n = len(model.tokenize(rec.sequence).token_ids)
        n = n if budget is None else min(n, budget)
        if budget is not None:
            budget -= n
        counts.append(n)
    row_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return _Plan(str(genome_path), names, lengths, row_starts)


class _Cursor:
    """Sequence and token starts of one record at a time, read forward through the file
    (records are visited in increasing order; going back restarts the stream)."""

    def __init__(self, plan: _Plan, model):
        self.plan, self.model = plan, model
        self.i, self.seq, self.bp, self._it = -1, None, None, None

    def sequence(self, i: int) -> str:
        if i != self.i:
            if self._it is None or i < self.i:
                self._it, self.i = iter(stream_records(self.plan.genome_path)), -1
            self.seq = self.bp = None  # release the previous record first
            while self.i < i:
                rec = next(self._it)
                self.i += 1
            self.seq = rec.sequence
        return self.seq

    def bp_start(self, i: int) -> np.ndarray:
        seq = self.sequence(i)
        if self.bp is None:
            self.bp = np.asarray(self.model.tokenize(seq).bp_start, dtype=np.int64)
        return self.bp


def _coordinate_pieces(plan: _Plan, model):
    """(seq, bp_start, bp_end, token_id) arrays of each record in row order: one record's
    tokenisation in memory at a time."""
    for i, rec in enumerate(stream_records(plan.genome_path)):
        n = plan.count(i)
        if n == 0:
            continue
        tok = model.tokenize(rec.sequence)
        yield (np.full(n, i, dtype=np.int32), np.asarray(tok.bp_start[:n], dtype=np.int64),
               np.asarray(tok.bp_end[:n], dtype=np.int64), np.asarray(tok.token_ids[:n], dtype=np.int64))


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


@dataclass
class _Job:
    """Everything one extraction needs, made once by every process (ranks, workers)."""

    genome_path: str
    model: object
    layer: int
    window: int
    stride: int
    batch_size: int
    plan: _Plan
    config: dict
    attrs: dict
    lm_bits: bool = False  # also store the LM's bits per token

    @property
    def d(self) -> int:
        return int(self.model.d_model)


def _check_options(dtype, batch_size, max_tokens, workers) -> None:
    from genesae_fast.store import layout

    layout.check_dtype(dtype)
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    if max_tokens is not None and int(max_tokens) < 1:
        raise InputError(f"--max-tokens {max_tokens}: must be at least 1")
    if workers is not None and int(workers) < 1:
        raise InputError(f"--workers {workers}: must be at least 1")


def _lm_bits_choice(model, lm_bits) -> tuple[bool, str | None]:
    """(keep LM bits?, why not) for ``lm_bits`` = True, False or "auto" (when the model can)."""
    if lm_bits not in (True, False, "auto"):
        raise InputError(f"--lm-bits {lm_bits!r}: expected true, false or auto")
    reason = model.lm_bits_unavailable() if callable(getattr(model, "lm_bits_unavailable", None)) else (
        f"model {model.name} has no next-token head loaded")
    if lm_bits is True and reason:
        raise InputError(f"--lm-bits: {reason}")
    if not lm_bits:
        return False, "not asked for (genesae extract --lm-bits)"
    return reason is None, reason


# what the store's lm_bits hold (attrs["lm_bits"])
LM_BITS_DEFINITION = ("-log2 P(token | the tokens before it in the window that owns the token), the model's "
                      "next-token head; NaN where it made no prediction (a window's first token, non-ACGT bases)")


def _make_job(genome_path, model, layer, *, window, stride, max_tokens, batch_size, lm_bits=False) -> _Job:
    """Validate the model settings, count the tokens, and build the store's config/attrs."""
    from genesae_fast.sequences import file_sha256

    genome_path = str(genome_path)
    layer = int(default_layer(model) if layer is None else layer)
    if not 0 <= layer <= int(model.n_layers):
        raise InputError(f"--layer {layer}: model {model.name} has layers 0..{model.n_layers}")
    window = int(window if window is not None else model.default_window)
    stride = int(stride if stride is not None else model.default_stride)
    if window < 1 or not 1 <= stride <= window:
        raise InputError(f"--window {window} --stride {stride}: need 1 <= stride <= window")
    keep_bits, why_not = _lm_bits_choice(model, lm_bits)
    plan = _plan(genome_path, model, max_tokens)
    if plan.n_rows == 0:
        raise InputError(f"{genome_path}: no tokens to extract (empty genome?)")
    identity = dict(model.identity)
    genome_sha = file_sha256(genome_path)
    max_tokens = None if max_tokens is None else int(max_tokens)
    config = {"kind": "extract", "model_name": identity.get("name", model.name),
              "model_sha256": identity.get("sha256", ""), "layer": layer, "genome_sha256": genome_sha,
              "window": window, "stride": stride, "max_tokens": max_tokens, "batch_size": int(batch_size)}
    sequences = [{"name": plan.names[i], "length": int(plan.lengths[i]), "row_start": int(plan.row_starts[i]),
                  "row_end": int(plan.row_starts[i + 1])} for i in range(len(plan.names))]
    attrs = {
        "model": {"name": identity.get("name", model.name), "path": str(identity.get("path", "")),
                  "sha256": identity.get("sha256", ""), "d_model": int(model.d_model),
                  "n_layers": int(model.n_layers)},
        "layer": layer, "window": window, "stride": stride, "max_tokens": max_tokens,
        "batch_size": int(batch_size),
        "genome": {"path": os.path.abspath(genome_path), "sha256": genome_sha, "sequences": sequences},
    }
    if keep_bits:
        config["lm_bits"] = True  # only then: other stores keep their config digests
        attrs["lm_bits"] = {"definition": LM_BITS_DEFINITION, "unit": "bits per token"}
    else:
        attrs["lm_bits_absent"] = why_not
    if getattr(model, "strand", "+") == "-":  # the reverse-complement pass (genesae_fast.strands)
        config["strand"] = attrs["strand"] = "-"
    return _Job(genome_path, model, layer, window, stride, int(batch_size), plan, config, attrs, keep_bits)


def extract_to_store(genome_path, model_spec_or_model, layer=None, out="activations.zarr", *, window=None,
                     stride=None, max_tokens=None, dtype="float16", batch_size=8, overwrite=False, progress=True,
                     chunk_rows=None, codec="none", trust_remote_code=False, device=None, verify_resume=True,
                     workers=None, lm_bits=False, strands="forward") -> str:
    """Extract one layer's activations of every token of a genome into a store; returns ``out``.

    Resumable: rerunning the same call after an interruption (even ``kill -9``) continues
    from the last committed chunk and ends with the same bytes as an uninterrupted run.
    Under torchrun (``WORLD_SIZE`` > 1) each rank computes its share of chunks; on one
    machine ``workers`` local processes share them the same way. On CPU every process
    computes with one torch thread, so the store is byte-identical for any number of
    workers or ranks.

    Parameters
    ----------
    genome_path : FASTA (plain, gzip, BGZF)
    model_spec_or_model : "builtin", a model folder, or a loaded GeneModel (pickled to workers)
    layer : 0 = embeddings, i = output of block i; default :func:`default_layer`
    out : store path (local folder or fsspec URL)
    window, stride : model window and step in tokens (the model's defaults when None)
    max_tokens : keep only the first ``max_tokens`` tokens (records in file order)
    dtype : "float16", "bfloat16" or "float32"
    batch_size : windows per forward pass (part of the configuration: it fixes the batch grid)
    overwrite : replace whatever is at ``out`` (otherwise other settings are refused)
    progress : tqdm bar with tokens/s and ETA (rank 0 only)
    chunk_rows : rows per chunk (default about 8 MiB of activations)
    codec : "none", "lz4" or "zstd"
    verify_resume : on resume, re-check committed chunks against their CRC-32, redo bad ones
    workers : local worker processes on CPU (default all cores, fewer for a job under
        ``MIN_ROWS_PER_WORKER`` tokens a core; 1 on a GPU, under torchrun, or for a model
        that cannot be sent to another process)
    lm_bits : also store the LM's bits per token (``lm_bits`` array, read by the annotation's
        "the LM knows this concept" diagnostic); "auto": when the model has a next-token
        head, else the store says why not (``attrs["lm_bits_absent"]``)
    strands : "forward" (one pass), "both" (also the reverse-complement pass, into
        ``genesae_fast.store.strands.rc_store_path(out)``; the forward store is unchanged) or
        "auto" (both for a model that reads one direction)
    """
    from genesae_fast.strands import check_strands, resolve_strands

    check_strands(strands)
    _check_options(dtype, batch_size, max_tokens, workers)
    model = _resolve_model(model_spec_or_model, trust_remote_code, device)
    opts = dict(window=window, stride=stride, max_tokens=max_tokens, dtype=dtype, batch_size=batch_size,
                overwrite=overwrite, progress=progress, chunk_rows=chunk_rows, codec=codec,
                trust_remote_code=trust_remote_code, device=device, verify_resume=verify_resume, workers=workers)
    layer = _extract_pass(genome_path, model_spec_or_model, model, layer, out, lm_bits=lm_bits, **opts)
    if resolve_strands(strands, model) == "both":
        from genesae_fast.store.strands import rc_store_path
        from genesae_fast.strands import ReverseComplementModel

        spec = str(model_spec_or_model) if isinstance(model_spec_or_model, (str, os.PathLike)) else None
        rc = ReverseComplementModel(model, spec, trust_remote_code)
        # LM bits of the forward reading only: the diagnostic scores the + strand's predictions
        _extract_pass(genome_path, rc, rc, layer, rc_store_path(out), lm_bits=False, **opts)
    return str(out)


def _extract_pass(genome_path, model_spec_or_model, model, layer, out, *, window, stride, max_tokens, dtype,
                  batch_size, overwrite, progress, chunk_rows, codec, trust_remote_code, device, verify_resume,
                  workers, lm_bits=False) -> int:
    """One pass of :func:`extract_to_store` (``model`` loaded from ``model_spec_or_model``); returns the layer."""
    job = _make_job(genome_path, model, layer, window=window, stride=stride, max_tokens=max_tokens,
                    batch_size=batch_size, lm_bits=lm_bits)
    spec = model_spec_or_model if isinstance(model_spec_or_model, (str, os.PathLike)) else _respec(model)
    with _one_thread(model) as on_cpu:
        ctx = _Dist()
        try:
            writer, remaining = _open_store(job, out, ctx, dtype=dtype, chunk_rows=chunk_rows, codec=codec,
                                            overwrite=overwrite, verify=verify_resume)
            n_workers = _n_workers(workers, remaining_rows=_rows_of(writer, remaining), n_chunks=len(remaining),
                                   usable=on_cpu and ctx.world == 1 and spec is not None)
            if n_workers > 1:
                _compute_in_workers(job, writer, remaining, n_workers, progress=progress,
                                    model_args=(spec, trust_remote_code, device))
            else:
                _compute_chunks(writer, job, _my_chunks(remaining, ctx.rank, ctx.world),
                                progress=progress and ctx.rank == 0, total_rows=_rows_of(writer, remaining))
            ctx.barrier()
            if ctx.rank == 0:
                writer.finalize()
            ctx.barrier()
        finally:
            ctx.close()
    return job.layer


# Starting a worker (a Python process importing torch, loading the model, counting tokens)
# costs seconds; by default a job gets one worker per this many tokens at most.
MIN_ROWS_PER_WORKER = 200_000


def _n_workers(workers, *, remaining_rows: int, n_chunks: int, usable: bool) -> int:
    """Worker processes for a job: ``workers`` if given (default all cores, fewer for a small
    job), never more than the chunks left; 1 where workers cannot be used."""
    if not usable:
        return 1
    n = int(workers) if workers else min(usable_cores(), max(1, remaining_rows // MIN_ROWS_PER_WORKER))
    return max(1, min(n, n_chunks))


def _respec(model):
    """How a worker process gets ``model``: the object itself when it pickles, else the spec
    it was loaded from (the built-in model, a model folder), else None (no workers). A
    worker's model that differs anyway is refused by the store's config digest."""
    import pickle

    try:
        pickle.dumps(model)
        return model
    except Exception:  # noqa: BLE001 - any pickling failure means "reload instead"
        pass
    if getattr(model, "strand", "+") != "+":  # reloading the spec would give the forward pass
        return None
    ident = dict(getattr(model, "identity", {}) or {})
    if ident.get("name", getattr(model, "name", "")) == "builtin":
        return "builtin"
    path = str(ident.get("path", ""))
    return path if path and os.path.isdir(path) else None


class _one_thread:
    """On CPU, one torch thread while extracting (restored after).

    oneDNN's results depend on the intra-op thread count (measured: the built-in model's
    activations differ in the last bits between 1 and 2 threads). One thread per process
    makes the bytes independent of the machine, of OMP_NUM_THREADS and of the number of
    ranks or workers; more processes use more cores.
    """

    def __init__(self, model):
        self.on_cpu = getattr(getattr(model, "device", None), "type", "cpu") == "cpu"

    def __enter__(self) -> bool:
        import torch

        self.before = torch.get_num_threads()
        if self.on_cpu:
            torch.set_num_threads(1)
        return self.on_cpu

    def __exit__(self, *exc):
        import torch

        if self.on_cpu:
            torch.set_num_threads(self.before)
        return False


def _open_store(job: _Job, out, ctx, *, dtype, chunk_rows, codec, overwrite, verify):
    """Rank 0 creates or validates the store and writes the coordinates; every rank gets
    the writer and the list of chunks still to compute (a refusal reaches every rank)."""
    from genesae_fast.store import layout
    from genesae_fast.store.writer import StoreWriter, config_hash

    error, remaining, writer = None, None, None
    if ctx.rank == 0:
        try:
            writer = StoreWriter.create(out, n_rows=job.plan.n_rows, d=job.d, dtype=dtype, config=job.config,
                                        attrs=job.attrs, chunk_rows=chunk_rows, codec=codec, coordinates=True,
                                        overwrite=overwrite, lm_bits=job.lm_bits)
            if not writer.coordinates_committed():
                writer.write_coordinate_pieces(_coordinate_pieces(job.plan, job.model))
            done = writer.committed(verify=verify)
            remaining = [k for k in range(writer.n_chunks) if k not in done]
        except InputError as exc:
            error = str(exc)
    error, remaining = ctx.broadcast((error, remaining))
    if error is not None:
        raise InputError(error)
    if writer is None:
        full = dict(job.config, n_rows=job.plan.n_rows, d=job.d, dtype=dtype,
                    chunk_rows=int(chunk_rows or layout.default_chunk_rows(job.d, dtype)), codec=codec,
                    has_coordinates=True, **({"has_lm_bits": True} if job.lm_bits else {}))
        writer = StoreWriter.attach(out, config_hash(full))
    return writer, remaining


def _rows_of(writer, chunks) -> int:
    return sum(writer.chunk_bounds(k)[1] - writer.chunk_bounds(k)[0] for k in chunks)


def _compute_chunks(writer, job: _Job, chunks, *, progress, total_rows=None, on_rows=None):
    """Compute and write ``chunks`` (sorted); one model call per run of consecutive chunks.

    ``on_rows(n)`` is called after each model block (progress of a worker process); it may
    return rows computed elsewhere to add to the bar.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total_rows if total_rows is not None else _rows_of(writer, chunks), unit="tok",
               unit_scale=True, desc="extract", disable=not progress, dynamic_ncols=True, smoothing=0.1)
    # One background writer thread: writes, fsyncs and commits overlap the next forward
    # passes; at most two chunks wait, which bounds memory.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genesae-store-write")
    pending = []

    def submit(k, buf, bits=None):
        while len(pending) >= 2:
            pending.pop(0).result()
        pending.append(pool.submit(writer.write_chunk, k, buf, bits))

    try:
        cursor = _Cursor(job.plan, job.model)
        for k0, k1 in _runs(chunks):
            k = _fill_chunks(writer, job, cursor, k0, k1, submit,
                             lambda n: bar.update(n + ((on_rows(n) or 0) if on_rows else 0)))
            if k != k1:
                raise RuntimeError(f"model produced too few tokens for chunks {k0}..{k1 - 1}")
        for f in pending:
            f.result()
        writer.flush()  # every commit record durable before the other ranks are told
    finally:
        pool.shutdown(wait=True)
        bar.close()


def _fill_chunks(writer, job: _Job, cursor, k0: int, k1: int, submit, tick) -> int:
    """Cut the model's blocks for chunks ``[k0, k1)`` into whole chunks and submit each;
    returns the chunk after the last one submitted."""
    a, b = writer.chunk_bounds(k0)[0], writer.chunk_bounds(k1 - 1)[1]
    k, buf, bbuf, filled = k0, None, None, 0
    for _row, acts, bits in _blocks(job, cursor, a, b):
        pos = 0
        while pos < len(acts):
            if buf is None:
                c0, c1 = writer.chunk_bounds(k)
                buf = np.empty((c1 - c0, writer.d), dtype=np.float32)
                bbuf = np.empty(c1 - c0, dtype=np.float32) if bits is not None else None
                filled = 0
            take = min(len(buf) - filled, len(acts) - pos)
            buf[filled:filled + take] = acts[pos:pos + take]
            if bbuf is not None:
                bbuf[filled:filled + take] = bits[pos:pos + take]
            filled += take
            pos += take
            if filled == len(buf):
                submit(k, buf, bbuf)
                k, buf = k + 1, None
        tick(len(acts))
    return k


def _blocks(job: _Job, cursor: _Cursor, a: int, b: int):
    """Activations of rows ``[a, b)`` in order, as ``(row, float32 [t, d], LM bits float32 [t] or None)``."""
    plan, model = job.plan, job.model
    row = a
    while row < b:
        i = int(np.searchsorted(plan.row_starts, row, side="right") - 1)
        s0, s1 = int(plan.row_starts[i]), int(plan.row_starts[i + 1])
        t0, stop = row - s0, min(b, s1) - s0  # token range in sequence i
        gen = model.extract(cursor.sequence(i), job.layer, window=job.window, stride=job.stride,
                            batch_size=job.batch_size, start_token=t0, **({"lm_bits": True} if job.lm_bits else {}))
        t = t0
        try:
            for blk in gen:
                if len(blk.token_ids) == 0:
                    continue
                take = min(len(blk.token_ids), stop - t)
                yield (s0 + t, _checked_block(blk, take, cursor.bp_start(i)[t:t + take], model, plan.names[i], t),
                       None if not job.lm_bits else np.asarray(blk.lm_bits[:take], dtype=np.float32))
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


def _checked_block(blk, take: int, expect: np.ndarray, model, name: str, t: int) -> np.ndarray:
    """The first ``take`` activations of a model block, after checking the model kept its
    contract (blocks in order from start_token, the model's width)."""
    if not np.array_equal(np.asarray(blk.bp_start[:take]), expect):
        raise RuntimeError(f"model {model.name} returned tokens out of order for sequence {name} at token {t}")
    acts = np.asarray(blk.activations[:take], dtype=np.float32)
    if acts.shape[1] != int(model.d_model):
        raise RuntimeError(f"model {model.name} returned width {acts.shape[1]}, expected {model.d_model}")
    return acts


# -- local worker processes ------------------------------------------------------------------------
def _compute_in_workers(job: _Job, writer, remaining, n_workers: int, *, progress, model_args):
    """Compute ``remaining`` chunks in ``n_workers`` processes: this one takes the first
    share, spawned workers the others (contiguous shares, as torchrun ranks take them)."""
    import multiprocessing as mp

    shares = [_my_chunks(remaining, r, n_workers) for r in range(n_workers)]
    ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
    queue = ctx.Queue()
    wargs = dict(genome_path=job.genome_path, layer=job.layer, window=job.window, stride=job.stride,
                 batch_size=job.batch_size, row_starts=job.plan.row_starts, names=job.plan.names,
                 lengths=job.plan.lengths, out=str(writer.path),
                 config_digest=writer.config, lm_bits=job.lm_bits)
    procs = [ctx.Process(target=_worker_main, args=(model_args, wargs, shares[r], queue), daemon=True)
             for r in range(1, n_workers)]
    for p in procs:
        p.start()
    errors = []

    def drain(timeout=0.0) -> int:
        return _drain(queue, errors, timeout)

    try:
        _compute_chunks(writer, job, shares[0], progress=progress, total_rows=_rows_of(writer, remaining),
                        on_rows=lambda n: drain())
        while any(p.is_alive() for p in procs) and not errors:
            drain(0.2)
        for p in procs:
            p.join()
        drain()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if errors or failed:
        raise RuntimeError(f"extraction worker failed: {errors[0] if errors else f'exit status {failed[0]}'}")


def _drain(queue, errors: list, timeout: float) -> int:
    """Rows reported by workers since the last call (errors go to ``errors``)."""
    import queue as queue_mod

    rows = 0
    try:
        msg = queue.get(timeout=timeout) if timeout else queue.get_nowait()
        while True:
            if isinstance(msg, str):
                errors.append(msg)
            else:
                rows += int(msg)
            msg = queue.get_nowait()
    except queue_mod.Empty:
        pass
    return rows


def _worker_main(model_args, wargs: dict, chunks: list, queue) -> None:
    """A spawned worker: one torch thread, its own model, the parent's row layout (no
    second tokenisation), and its share of chunks (records streamed from the file)."""
    import torch

    from genesae_fast.store.writer import StoreWriter

    torch.set_num_threads(1)
    try:
        model = _resolve_model(*model_args)
        writer = StoreWriter.attach(wargs["out"], wargs["config_digest"])
        plan = _Plan(wargs["genome_path"], wargs["names"], wargs["lengths"],
                     np.asarray(wargs["row_starts"], dtype=np.int64))
        job = _Job(wargs["genome_path"], model, wargs["layer"], wargs["window"], wargs["stride"], wargs["batch_size"],
                   plan, {}, {}, wargs["lm_bits"])
        _compute_chunks(writer, job, chunks, progress=False, on_rows=queue.put)
    except BaseException as exc:  # reported to the parent, which raises it
        queue.put(f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from None


__all__ = ["extract_to_store", "default_layer", "MOTIF_WIDTH_BP"]
