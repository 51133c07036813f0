"""Type stubs of the C++ extension ``genesae_fast._native`` (csrc/bindings.cpp).

Base codes everywhere: A=0, C=1, G=2, T=3, anything else 4. Arrays are numpy arrays;
inputs are converted (``forcecast``) to the dtype named, C-contiguous. Every routine
releases the GIL while it computes; worker threads are capped at the machine's cores.
"""
from typing import Any, Callable, Sequence

import numpy as np
import numpy.typing as npt

_U8 = npt.NDArray[np.uint8]
_U64 = npt.NDArray[np.uint64]
_Buffer = bytes | bytearray | memoryview | npt.NDArray[Any]

# --- csrc/fasta.cpp -----------------------------------------------------------------------

def parse_fasta(buffer: _Buffer) -> list[tuple[str, _U8, npt.NDArray[np.bool_]]]:
    """(header, codes uint8[n], softmask bool[n]) per record.

    Raises ValueError("line N: problem") on invalid FASTA, and on a buffer that is not
    C-contiguous single bytes.
    """

def encode_bases(buffer: _Buffer) -> _U8:
    """ASCII bases -> codes, any case. The buffer must be C-contiguous single bytes (else ValueError)."""

# --- csrc/kmers.cpp -----------------------------------------------------------------------

def count_kmers(
    arrays: Sequence[npt.ArrayLike],
    k: int,
    canonical: bool = False,
    min_count: int = 1,
    threads: int = 1,
    method: str = "auto",
) -> tuple[_U64, _U64]:
    """(packed k-mers uint64[m] ascending, counts uint64[m]); method: "auto", "partition", "dense"."""

def count_kmers_stream(
    arrays: Sequence[npt.ArrayLike],
    k: int,
    canonical: bool,
    min_count: int,
    threads: int,
    method: str,
    memory: int,
    spill_dir: str,
    sink: Callable[[_U64, _U64], object],
) -> int:
    """Count within ``memory`` bytes (0 = no limit), spilling to ``spill_dir`` ("" = never).

    ``sink(kmers, counts)`` receives read-only uint64 views, valid only during the call, in
    ascending k-mer order. Returns the number of rows.
    """

class KmerSpiller:
    """k-mers appended to bucket spill files a stretch at a time, then counted (used by
    genesae_fast.kmers_file)."""
    def __init__(self, k: int, canonical: bool, threads: int, memory: int, spill_dir: str) -> None: ...
    def add(self, arrays: Sequence[npt.ArrayLike]) -> None:
        """Append the k-mers of these uint8 code arrays (none spans two arrays)."""
    def count(self, min_count: int, sink: Callable[[_U64, _U64], object]) -> int:
        """Count everything added; ``sink`` gets the rows in ascending order. Returns the row count."""

def format_kmer_tsv(kmers: npt.ArrayLike, counts: npt.ArrayLike, k: int) -> bytes:
    """'KMER\\tCOUNT\\n' lines (no header)."""

def _set_kmer_fault(segment: int) -> None:
    """Test hook: the k-mer histogram worker taking ``segment`` throws std::bad_alloc (-1 = off)."""

def _set_dense_wide_from(bases: int) -> None:
    """Test hook: inputs of at least ``bases`` bases use uint64 dense cells (default 2^32 - 1)."""

# --- csrc/scan.cpp ------------------------------------------------------------------------
# Arguments after the documented ones are left open: the scanner's bindings are still growing.

def pvalue_tables(
    cells: npt.ArrayLike,
    col_offsets: npt.ArrayLike,
    bg: npt.ArrayLike,
    pvalue: float,
    threads: int = 1,
    *args: Any,
    **kwargs: Any,
) -> tuple[list[npt.NDArray[np.float64]], npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """FIMO's exact p-value tables: (tables, starts int64[E], thresholds int32[E])."""

def scan_pssms(
    seqs: Sequence[npt.ArrayLike],
    cells: npt.ArrayLike,
    col_offsets: npt.ArrayLike,
    thresholds: npt.ArrayLike,
    threads: int = 1,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Exact integer PWM scan: hits as (entry int32, seq int32, start int64, score int32) arrays."""

def scan_simd_paths() -> list[str]:
    """Kernels this build and CPU can run: 'baseline' and, on x86-64 with AVX2, 'avx2'."""

def scan_simd_active() -> str:
    """The kernel a scan started now would use (GENESAE_SCAN_SIMD=baseline forces 'baseline')."""

class StreamScanner:
    """Streaming exact PWM scan (csrc/scan_stream.cpp); used only by genesae_fast.scan_stream."""
    def __getattr__(self, name: str) -> Any: ...

def __getattr__(name: str) -> Any:
    """Bindings added after these stubs were written (kept loose, see tests/test_native_stubs.py)."""
