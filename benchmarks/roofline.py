"""Roofline estimate of a TopK SAE step's ops on an H100, ours against the dense alternative.

For each op it counts FLOPs and the compulsory bytes moved to and from HBM (every tensor
read or written once; gathered rows counted once per use, i.e. no cache reuse) and
turns them into the time they imply at the peak of an H100 SXM: bf16 dense tensor-core
989 TFLOP/s and HBM3 3.35 TB/s (NVIDIA's H100 datasheet). The implied time is
``max(FLOPs / peak, bytes / bandwidth)``: a lower bound, not a prediction.

* ours: fused encoder (GEMM tile by tile, top-k in registers: no ``[B, n]`` traffic;
  ``[B, splits * k]`` int64 candidates), or for k > 64 the chunked GEMM + top-k (the
  chunk goes through memory); sparse decoder and both backward passes, O(B k d).
* dense: GEMM writing ``[B, n]`` pre-activations, ``torch.topk`` reading them, dense
  codes ``[B, n]`` and three more ``[B, n] x [n, d]`` GEMMs for the backward passes.

    python benchmarks/roofline.py      # prints the markdown table for RESULTS.md
"""
from __future__ import annotations

PEAK_FLOPS = 989e12  # H100 SXM bf16 dense tensor-core FLOP/s
PEAK_BYTES = 3.35e12  # H100 SXM HBM3 bytes/s
S = 2  # bytes per bf16 element
B = 4096
SHAPES = [(768, 32768, 32), (768, 131072, 32), (4096, 131072, 64), (768, 32768, 384)]


def ours(d, n, k, splits=4, cached=False):
    """{op: (flops, bytes)} for our kernels at (B, d, n, k) in bf16.

    ``cached``: gathered table rows cost HBM traffic once per distinct row (at most n),
    as if the table stayed in L2; otherwise once per use (B * k rows).
    """
    g = min(B * k, n) if cached else B * k  # gathered rows that reach HBM
    enc_bytes = B * d * S + n * d * S + n * S + B * k * (S + 8)
    if k <= 64:
        enc_bytes += 2 * B * splits * k * 8  # candidate keys written and merged
    else:
        enc_bytes += 2 * B * n * S  # the chunked path's pre-activations go through memory
    return {
        "encoder fwd": (2 * B * n * d, enc_bytes),
        "decoder fwd": (2 * B * k * d, g * d * S + B * k * (S + 8) + B * d * S),
        # gather_dot (dvals) + scatter_outer (dW_dec, fp32 accumulator zeroed, then cast);
        # the scatter reads the [B, d] rows once per use unless cached
        "decoder bwd": (4 * B * k * d, g * d * S + (B if cached else B * k) * d * S + 2 * B * d * S + n * d * (4 + 4 + S)),
        # gather_combine (dx) + scatter_outer (dW_enc, db_enc)
        "encoder bwd": (4 * B * k * d, g * d * S + (B if cached else B * k) * d * S + 2 * B * d * S + n * d * (4 + 4 + S)),
    }


def dense(d, n, k):
    """{op: (flops, bytes)} for the dense alternative (GEMM + topk + dense decode)."""
    bn = B * n * S
    return {
        "encoder fwd": (2 * B * n * d, B * d * S + n * d * S + bn + bn + B * k * (S + 8)),
        "decoder fwd": (2 * B * n * d, bn + bn + n * d * S + B * d * S),  # scatter codes, GEMM
        "decoder bwd": (4 * B * n * d, 2 * bn + 2 * n * d * S + 2 * B * d * S),  # dcodes, dW_dec
        "encoder bwd": (4 * B * n * d, 2 * bn + 2 * n * d * S + 2 * B * d * S),  # dense dpre, dx, dW_enc
    }


def implied_us(flops, nbytes):
    """Lower-bound time in microseconds at the H100's peaks."""
    return max(flops / PEAK_FLOPS, nbytes / PEAK_BYTES) * 1e6


def table() -> str:
    lines = [
        "| d | n | k | op | ours GFLOP | ours MB | ours us | ours us, table in L2 | dense GFLOP | dense MB | dense us "
        "| dense / ours |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d, n, k in SHAPES:
        o, oc, dn = ours(d, n, k), ours(d, n, k, cached=True), dense(d, n, k)
        tot = [0.0, 0.0, 0.0]
        for op in o:
            t = [implied_us(*o[op]), implied_us(*oc[op]), implied_us(*dn[op])]
            tot = [a + b for a, b in zip(tot, t, strict=True)]
            lines.append(
                f"| {d} | {n} | {k} | {op} | {o[op][0] / 1e9:.1f} | {o[op][1] / 1e6:.0f} | {t[0]:.0f} | {t[1]:.0f} | "
                f"{dn[op][0] / 1e9:.1f} | {dn[op][1] / 1e6:.0f} | {t[2]:.0f} | {t[2] / t[0]:.1f}-{t[2] / t[1]:.1f}x |"
            )
        lines.append(
            f"| {d} | {n} | {k} | **step** | | | {tot[0]:.0f} | {tot[1]:.0f} | | | {tot[2]:.0f} "
            f"| {tot[2] / tot[0]:.1f}-{tot[2] / tot[1]:.1f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
