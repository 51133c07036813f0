"""Where ``genesae scan`` writes: stdout, a file (atomic), a FIFO/device (written through), or
BGZF (a ``.gz`` name), sorted by position and tabix-indexed for BED."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from genesae_fast.outputs import check_output_path, is_special_file, open_output
from genesae_fast.scan import effective_threads
from genesae_fast.scan_stream import scan_genome_file


def scan_to_path(genome, motifs, out: str, *, bed: bool = False, threads: int | None = None, **options) -> dict:
    """Scan ``genome`` and write every hit to ``out`` ("-" for stdout); see ``scan_genome_file``
    (``motifs`` may be a list or a function that loads them).

    A name ending in ``.gz`` is written as BGZF; BED there is in genome order with a tabix
    index beside it (``out + ".tbi"``). Regular files appear only when complete.
    """
    if out == "-":
        sys.stdout.flush()
        return scan_genome_file(genome, motifs, sys.stdout.buffer, bed=bed, threads=threads, **options)
    path = check_output_path(out)
    if not str(path).endswith(".gz"):
        with open_output(path, "wb") as fh:
            return scan_genome_file(genome, motifs, fh, bed=bed, threads=threads, **options)
    from genesae_fast.bgzf import BgzfWriter  # only for .gz names (its import costs start-up time)

    index = bed and not is_special_file(path)
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(open_output(path, "wb"))
        tbi = stack.enter_context(open_output(Path(str(path) + ".tbi"), "wb")) if index else None
        writer = stack.enter_context(BgzfWriter(fh, index=index, threads=effective_threads(threads)))
        info = scan_genome_file(genome, motifs, writer, bed=bed, threads=threads, genome_order=bed, **options)
        index_bytes = writer.close(info["names"])
        if tbi is not None:
            tbi.write(index_bytes)
        return info
