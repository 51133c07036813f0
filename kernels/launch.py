"""Launch plans of every Triton kernel: block sizes, warps, stages and grids, without Triton.

The launchers in :mod:`topk_encode` and :mod:`sparse_rows` take their configuration
from the functions here, and ``benchmarks/kernel_resources.py`` compiles the kernels
ahead of time with exactly the same plans for a table of shapes and GPU architectures,
so the resource check sees what a real launch would run. Everything here is a pure
function of the problem shape, the dtype and a :class:`DeviceSpec` (SM count and
compute capability), so it is testable on a machine without a GPU.

Why these numbers (registers per thread are the scarce resource; the limit is 255 and
anything beyond spills to local memory):

* encoder split kernel (measured with ``benchmarks/kernel_resources.py``, 8 warps: 172-255
  registers on sm_90, no spill; sm_80 fp32 needs the narrower ``BLOCK_D`` below): a ``[64, 64]`` pre-activation tile (fp32 accumulator, then int64
  keys) plus a ``[64, K_PAD]`` running top-k of int64 keys; at 8 warps that is 16 + 32 +
  ``K_PAD / 4`` 32-bit registers per thread for the live tiles, which leaves room for the
  dot operands up to ``K_PAD = 64``. Larger k is not run by this kernel (see
  ``FUSED_MAX_K``); ``genesae_fast.ops`` sends it to the chunked GEMM + top-k path.
* the latent split count is chosen so that the grid (row blocks x splits) covers every
  SM at least once, with a small tail (see :func:`encode_splits`).
* row kernels: 2-D ``[rows, columns]`` tiles only, 4 warps, and ``num_stages = 1`` for
  the gather loops (their loads depend on an index loaded in the same iteration, so
  software pipelining only adds registers).

This module imports only the standard library.
"""
from __future__ import annotations

from dataclasses import dataclass

# The fused encoder keeps each row's running top-k in registers: up to 64 keys per row.
# Above that (AuxK's k_aux = d / 2 is 256 to 2048) the register file cannot hold the set
# without spilling, so k > FUSED_MAX_K runs the chunked GEMM + top-k path instead.
FUSED_MAX_K = 64

# The interpreter (CPU tensors, TRITON_INTERPRET=1) has no SMs: plan for a small pretend
# GPU so that tests exercise several latent splits and the merge.
INTERPRETER_SMS = 4


def next_power_of_2(v: int) -> int:
    """Smallest power of two >= v (1 for v <= 1)."""
    return 1 if v <= 1 else 1 << (int(v) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative ints."""
    return -(-a // b)


@dataclass(frozen=True)
class DeviceSpec:
    """What launch choices depend on: the SM count and the compute capability (80, 90...)."""

    sm_count: int
    arch: int


def device_spec(device) -> DeviceSpec:
    """The :class:`DeviceSpec` of a torch device (a pretend small GPU for CPU tensors)."""
    import torch

    if getattr(device, "type", device) == "cuda":
        props = torch.cuda.get_device_properties(device)
        return DeviceSpec(props.multi_processor_count, props.major * 10 + props.minor)
    return DeviceSpec(INTERPRETER_SMS, 80)


@dataclass(frozen=True)
class KernelPlan:
    """One launch: its grid, the kernel's constexpr block sizes, and warps/stages."""

    grid: tuple
    constexprs: dict
    num_warps: int
    num_stages: int

    @property
    def programs(self) -> int:
        out = 1
        for g in self.grid:
            out *= g
        return out


@dataclass(frozen=True)
class EncodePlan:
    """The fused encoder's two launches and the latent split they share."""

    splits: int
    split_len: int
    split: KernelPlan
    merge: KernelPlan


def encode_splits(row_blocks: int, n_tiles: int, sm_count: int, max_splits: int = 64) -> int:
    """Latent splits so that ``row_blocks * splits`` fills the SMs with a small tail.

    At least ``ceil(sm_count / row_blocks)`` splits (one full wave), then the smallest
    count up to twice that whose last wave is at least 80% full; never more splits than
    latent tiles or ``max_splits`` (each split adds k candidates to the merge).
    """
    cap = max(1, min(n_tiles, max_splits))
    lo = min(cap, max(1, cdiv(sm_count, max(row_blocks, 1))))
    best, best_eff = lo, 0.0
    for s in range(lo, min(cap, 2 * lo) + 1):
        programs = row_blocks * s
        eff = programs / (cdiv(programs, sm_count) * sm_count)
        if eff >= 0.8:
            return s
        if eff > best_eff:
            best, best_eff = s, eff
    return best


def encode_plan(B: int, n: int, d: int, k: int, half: bool, dev: DeviceSpec, splits: int = 0) -> EncodePlan:
    """Plan of the fused encoder for ``x [B, d]``, ``W_enc [n, d]``, ``k <= FUSED_MAX_K``.

    ``half``: bf16/fp16 inputs (smaller operand tiles in shared memory allow a deeper
    pipeline). ``splits`` > 0 forces the latent split count (tests).
    """
    block_b, block_n = 64, 64
    block_d, stages = (64, 3) if half else (32, 2)
    if not half and dev.arch < 90:
        # sm_80 tf32 mma.sync keeps its operand fragments in registers: at BLOCK_D = 32 and
        # 2 stages ptxas spilled 104 B/thread (kernel_resources.py); 16 columns spill <= 24 B
        block_d = 16
    k_pad = next_power_of_2(k)
    row_blocks = cdiv(B, block_b)
    n_tiles = cdiv(n, block_n)
    # at most 2048 candidates per row, so the merge's bitonic top-k stays small (few rows,
    # e.g. inference on a handful of tokens, would otherwise ask for one split per tile)
    max_splits = max(1, 2048 // k_pad)
    s = splits or encode_splits(row_blocks, n_tiles, dev.sm_count, max_splits=max_splits)
    tiles = cdiv(n_tiles, s)  # whole tiles per split
    if cdiv(n_tiles, tiles) < s:  # rounding up lost splits (e.g. 4 tiles in 3): round down
        tiles = max(1, n_tiles // s)
    if not splits and cdiv(n_tiles, tiles) > max_splits:
        # rounding down can add splits past the merge's candidate budget: take them back
        tiles = cdiv(n_tiles, max_splits)
    split_len = tiles * block_n
    s = cdiv(n, split_len)
    split = KernelPlan(
        (row_blocks, s),
        dict(BLOCK_B=block_b, BLOCK_N=block_n, BLOCK_D=block_d, K_PAD=k_pad),
        num_warps=8,
        num_stages=stages,
    )
    c_pad = next_power_of_2(s * k)
    # about 2048 candidate keys per program (16 int64 registers per thread at 4 warps)
    merge_b = max(1, min(64, 2048 // c_pad))
    merge = KernelPlan((cdiv(B, merge_b),), dict(BLOCK_B=merge_b, C_PAD=c_pad, K_PAD=k_pad), num_warps=4, num_stages=1)
    return EncodePlan(s, split_len, split, merge)


def _block_d(d: int) -> int:
    return min(128, max(16, next_power_of_2(d)))


def _row_block(B: int, d_blocks: int, dev: DeviceSpec, preferred: int) -> int:
    """Rows per program: ``preferred``, halved (down to 8) until the grid fills the SMs."""
    rows = preferred
    while rows > 8 and cdiv(B, rows) * d_blocks < dev.sm_count:
        rows //= 2
    return rows


def gather_combine_plan(B: int, k: int, d: int, dev: DeviceSpec) -> KernelPlan:
    """``out [B, d] = sum_j w[b, j] table[idx[b, j]]``: programs over (rows, column blocks)."""
    block_d = _block_d(d)
    d_blocks = max(1, cdiv(d, block_d))
    block_b = _row_block(B, d_blocks, dev, 32)
    return KernelPlan((cdiv(B, block_b), d_blocks), dict(BLOCK_B=block_b, BLOCK_D=block_d), num_warps=4, num_stages=1)


def gather_dot_plan(B: int, k: int, d: int, dev: DeviceSpec) -> KernelPlan:
    """``out [B, k] = <table[idx[b, j]], rows[b]>``: programs over (rows, blocks of 8 slots)."""
    block_j = min(8, next_power_of_2(k))
    j_blocks = max(1, cdiv(k, block_j))
    block_b = _row_block(B, j_blocks, dev, 32)
    return KernelPlan(
        (cdiv(B, block_b), j_blocks), dict(BLOCK_B=block_b, BLOCK_J=block_j, BLOCK_D=_block_d(d)), num_warps=4,
        num_stages=1,
    )


def scatter_atomic_plan(B: int, k: int, d: int, dev: DeviceSpec) -> KernelPlan:
    """Atomic ``scatter_outer``: programs over (rows, column blocks), like gather_combine."""
    block_d = _block_d(d)
    d_blocks = max(1, cdiv(d, block_d))
    block_b = _row_block(B, d_blocks, dev, 32)
    return KernelPlan((cdiv(B, block_b), d_blocks), dict(BLOCK_B=block_b, BLOCK_D=block_d), num_warps=4, num_stages=1)


def scatter_segment_plan(n: int, d: int, dev: DeviceSpec) -> KernelPlan:
    """Deterministic ``scatter_outer``: one program per (latent, column block)."""
    block_d = _block_d(d)
    return KernelPlan((n, max(1, cdiv(d, block_d))), dict(BLOCK_S=16, BLOCK_D=block_d), num_warps=4, num_stages=1)
